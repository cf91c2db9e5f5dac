"""Local attributes -> the portal's custom fields (``UF_CRM_...``) of deals and contacts.

``BITRIX_DEAL_FIELDS`` / ``BITRIX_CONTACT_FIELDS`` map an attribute to a field:
a model field of the order (user) -- ``material``, ``comment``, ``quantity``,
``phone``... -- or ``service``, the service's display name. The value sent depends
on the field's ``USER_TYPE_ID`` (facts document, "Custom fields"):

* ``enumeration``: the ``ID`` of the list item whose ``VALUE`` equals the local
  value or its display name, ignoring case. No such item: the field is left unset
  (a warning in the log; ``bitrix_doctor`` names the missing items).
* ``date``: ``YYYY-MM-DD``; ``datetime``: ISO 8601; ``boolean`` (or a yes/no into ``integer``): 1/0;
  ``money``: ``amount|currency`` for the order's amount; anything else as text.
* ``MULTIPLE`` Y: an array of the one value.

A field the portal does not have is left out (the doctor and the worker's start-up
check report it). The field descriptions come from ``crm.<entity>.userfield.list``
(every page: a mature portal has more than the 50 of one page), read once per process and
again when a list value is missing -- at most once a minute, so an order whose value
has no item does not cost a request every time.
"""

from __future__ import annotations

import logging
import time
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist

from crmbridge.bitrix.client import BitrixClient
from orders.catalogue import SERVICES

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 60.0
SETTINGS = {"deal": "BITRIX_DEAL_FIELDS", "contact": "BITRIX_CONTACT_FIELDS"}
# Field types a local value of each kind can be written to.
COMPATIBLE = {
    "text": {"string", "enumeration"},
    "integer": {"integer", "double", "string", "enumeration"},
    "decimal": {"double", "money", "string"},
    "date": {"date", "datetime", "string"},
    "boolean": {"boolean", "integer", "string"},
}


def field_map(entity: str) -> dict[str, str]:
    """attribute -> ``UF_CRM_...`` for ``deal`` or ``contact``."""
    return getattr(settings, SETTINGS[entity])


def list_method(entity: str) -> str:
    return f"crm.{entity}.userfield.list"


class UserFieldCatalog:
    """The portal's custom fields by entity, cached (see the module docstring)."""

    def __init__(self, client: BitrixClient) -> None:
        self.client = client
        self._fields: dict[str, dict[str, dict]] = {}
        self._read_at: dict[str, float] = {}

    def prime(self, entity: str, listing: Any) -> None:
        """Take a whole ``crm.<entity>.userfield.list`` read elsewhere (the start-up check's batch)."""
        items = listing if isinstance(listing, list) else []
        self._fields[entity] = {str(f.get("FIELD_NAME")): f for f in items if isinstance(f, dict)}
        self._read_at[entity] = time.monotonic()

    def fields(self, entity: str) -> dict[str, dict]:
        if entity not in self._fields:
            self.prime(entity, self.client.list_all(list_method(entity)))
        return self._fields[entity]

    def refresh(self, entity: str) -> bool:
        """Read the list again unless it was read within ``REFRESH_SECONDS``; whether it was read."""
        if time.monotonic() - self._read_at.get(entity, float("-inf")) < REFRESH_SECONDS:
            return False
        self.prime(entity, self.client.list_all(list_method(entity)))
        return True

    def values(self, entity: str, record) -> dict[str, Any]:
        """The custom fields of ``record`` as the portal takes them; empty when none are mapped."""
        mapped = field_map(entity)
        if not mapped:
            return {}
        portal_fields = self.fields(entity)
        values: dict[str, Any] = {}
        for attribute, name in mapped.items():
            description = portal_fields.get(name)
            if description is None:
                continue
            value = self._value(entity, record, attribute, description)
            if value is not _UNSET:
                values[name] = value
        return values

    def _value(self, entity: str, record, attribute: str, description: dict) -> Any:
        local, display = local_value(record, attribute)
        kind = description.get("USER_TYPE_ID")
        if kind == "enumeration" and local not in (None, ""):
            item = enumeration_item(description, local, display)
            if item is None and self.refresh(entity):
                item = enumeration_item(self.fields(entity).get(description["FIELD_NAME"], description), local, display)
            if item is None:
                logger.warning(
                    "%s: %s %r has no item in list field %s; field left unset",
                    SETTINGS[entity], attribute, display, description.get("FIELD_NAME"),
                )  # fmt: skip
                return _UNSET
            value: Any = item
        else:
            value = convert(kind, local, record=record)
        if description.get("MULTIPLE") == "Y":
            return [] if value in (None, "") else [value]
        return value


_UNSET = object()


def local_value(record, attribute: str) -> tuple[Any, str]:
    """``(value, display name)`` of an attribute: ``service`` or a model field (choices give their label)."""
    if attribute == "service":
        return record.service_id, SERVICES.get(record.service_id, record.service_id)
    value = getattr(record, attribute)
    display = getattr(record, f"get_{attribute}_display", None)
    return value, str(display() if callable(display) else ("" if value is None else value))


def value_kind(model, attribute: str) -> str | None:
    """``text``, ``integer``, ``decimal``, ``date``, ``boolean``; ``None`` when the model has no such field."""
    if attribute == "service":
        return "text"
    try:
        field = model._meta.get_field(attribute)
    except FieldDoesNotExist:
        return None
    internal = field.get_internal_type()
    if internal in ("DateField", "DateTimeField"):
        return "date"
    if internal == "BooleanField":
        return "boolean"
    if internal == "DecimalField" or internal == "FloatField":
        return "decimal"
    if "IntegerField" in internal or internal == "BigAutoField" or internal == "AutoField":
        return "integer"
    return "text" if not field.is_relation else None


def enumeration_item(description: dict, local: Any, display: str) -> str | None:
    wanted = {str(local).casefold(), display.casefold()}
    for item in description.get("LIST") or []:
        if isinstance(item, dict) and str(item.get("VALUE", "")).casefold() in wanted:
            return str(item.get("ID"))
    return None


def convert(kind: str | None, value: Any, *, record=None) -> Any:
    """A local value as a field of type ``kind`` takes it (see the module docstring)."""
    if value is None:
        return ""
    if kind == "date" and isinstance(value, date):
        return value.date().isoformat() if isinstance(value, datetime) else value.isoformat()
    if kind == "datetime" and isinstance(value, date):
        return value.isoformat()
    if kind == "boolean" or (kind == "integer" and isinstance(value, bool)):  # not "True" (the portal reads 0)
        return 1 if value else 0
    if kind == "money" and isinstance(value, Decimal) and getattr(record, "currency", None):
        return f"{value}|{record.currency}"
    return str(value)
