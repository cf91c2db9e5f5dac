"""``crm.duplicate.findbycomm``: which contacts hold an e-mail or phone, as the portal answers.

From bitrix24-rest-facts.md, "CRM depth": ``type`` (``EMAIL``/``PHONE``) and
``values`` (at most 20) are required, an HTTP 400 otherwise; ``entity_type``
(``CONTACT``, ``LEAD``, ``COMPANY``) narrows the search, omitted means all
three. The answer maps each entity type with matches to their IDs
(``{"CONTACT": [275, 2297]}``), leaves out the types without any, and is ``[]``
(PHP's empty array) when nothing matches. When one type has 20 or more matches
the others are left out. E-mails match in any letter case; phones by their
digits, ignoring an extension. The sandbox keeps contacts only, so ``LEAD`` and
``COMPANY`` never match.
"""

from __future__ import annotations

from typing import Any

from crmbridge.bitrix.communications import normal
from devtools.sandbox.errors import RestError
from devtools.sandbox.store import RecordStore

MAX_VALUES = 20
ENTITY_TYPES = ("LEAD", "CONTACT", "COMPANY")
# Past this many matches in one type, the portal leaves the other types out.
CROWDED = 20


def find_by_communication(store: RecordStore, params: dict) -> dict | list:
    kind = str(params.get("type") or "").strip().upper()
    if kind not in ("EMAIL", "PHONE"):
        raise RestError(400, "", "Communication type is not defined.")
    values = [normal(kind, str(v)) for v in _values(params.get("values"))]
    values = [v for v in values if v]
    if not values:
        raise RestError(400, "", "Communication values is not defined.")
    if len(values) > MAX_VALUES:
        raise RestError(400, "", f"Too many communication values ({len(values)}), at most {MAX_VALUES}.")
    wanted = str(params.get("entity_type") or "").strip().upper()
    types = [wanted] if wanted in ENTITY_TYPES else list(ENTITY_TYPES)
    found = {entity_type: _matches(store, entity_type, kind, set(values)) for entity_type in types}
    found = {entity_type: ids for entity_type, ids in found.items() if ids}
    crowded = [entity_type for entity_type, ids in found.items() if len(ids) >= CROWDED]
    if crowded:
        found = {crowded[0]: found[crowded[0]]}
    return found or []


def _matches(store: RecordStore, entity_type: str, kind: str, values: set[str]) -> list[int]:
    if entity_type != "CONTACT":
        return []
    return store.contacts_with(kind, values)


def _values(raw: Any) -> list:
    """A JSON list, a query-string array (``{"0": ...}``) or one value."""
    if isinstance(raw, dict):
        return list(raw.values())
    if isinstance(raw, list):
        return raw
    return [] if raw is None or raw == "" else [raw]
