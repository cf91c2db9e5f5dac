"""The two things we sync, in one table: deal <- order, contact <- user.

Everything that differs between a deal and a contact and is not behaviour
lives here: the local model, the field holding the Bitrix ID, the CRM method
prefix, the local name used in log lines and the ``ORIGIN_ID`` prefix
(``order-12``, ``user-5``). Code that needs one of these asks this module
instead of keeping its own ``{"deal": ..., "contact": ...}`` table.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.apps import apps
from django.conf import settings
from django.db import models


@dataclass(frozen=True)
class Entity:
    name: str  # "deal": the message's ``entity`` and SyncRecord.entity
    # "orders.Order"; None: ``settings.AUTH_USER_MODEL``, read when needed (this module is
    # imported by the Bitrix client, which also runs without Django settings).
    model_label: str | None
    bitrix_id_field: str  # "bitrix_deal_id"
    crm_prefix: str  # "crm.deal": crm.deal.add, crm.deal.list, ...
    local_name: str  # "order": log lines ("deal 12 for order 12") and the ORIGIN_ID prefix
    plural_label: str  # "orders (deals)": command output
    # "changed since" for ``bitrix_resync --since``; users have no modification time: joined since.
    since_field: str

    def label(self) -> str:
        return self.model_label or settings.AUTH_USER_MODEL

    def model(self) -> type[models.Model]:
        return apps.get_model(self.label())

    def method(self, action: str) -> str:
        """``DEAL.method("add") == "crm.deal.add"``."""
        return f"{self.crm_prefix}.{action}"

    def origin_id(self, local_id: int) -> str:
        """``DEAL.origin_id(12) == "order-12"``: how a Bitrix record points back at ours."""
        return f"{self.local_name}-{local_id}"


DEAL = Entity(
    name="deal",
    model_label="orders.Order",
    bitrix_id_field="bitrix_deal_id",
    crm_prefix="crm.deal",
    local_name="order",
    plural_label="orders (deals)",
    since_field="updated_at",
)
CONTACT = Entity(
    name="contact",
    model_label=None,
    bitrix_id_field="bitrix_contact_id",
    crm_prefix="crm.contact",
    local_name="user",
    plural_label="users (contacts)",
    since_field="date_joined",
)
ENTITIES: dict[str, Entity] = {entity.name: entity for entity in (DEAL, CONTACT)}
NAMES: tuple[str, ...] = tuple(ENTITIES)


MAX_ID_DIGITS = 18  # a positive BIGINT, ours or the portal's, always fits


def parse_record_id(raw: object) -> int | None:
    """A record ID (ours or the portal's) as text -> the number, or ``None`` if it is not one.

    The one parser of record IDs for every reader: the worker (``Operation.from_fields``),
    the inbound events, the dashboard's rows and links, requeueing, reconciliation.
    ASCII digits only, at most ``MAX_ID_DIGITS``, above zero: ``str.isdigit()`` also
    accepts ``"²"`` (which ``int()`` refuses) and ``"٣"`` (which it reads as 3).
    """
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return None
    text = str(raw)
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_ID_DIGITS:
        return None
    number = int(text)
    return number if number > 0 else None


def get(name: str) -> Entity:
    """The entity called ``name``; ``KeyError`` for anything else."""
    return ENTITIES[name]


def for_model(model: type[models.Model]) -> Entity:
    """The entity a model's rows are synced as."""
    label = model._meta.label
    for entity in ENTITIES.values():
        if entity.label() == label:
            return entity
    raise LookupError(f"{label} is not synced with Bitrix")
