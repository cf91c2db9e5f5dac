"""Deals and contacts as a Bitrix24 portal keeps them.

Records are stored the way ``*.get`` answers: every scalar a string or
``None`` (``"ID": "410"``, ``"OPPORTUNITY": "1500.00"``), multifields as lists
of ``{"ID", "VALUE_TYPE", "VALUE", "TYPE_ID"}``. Input is coerced the same way
whatever its transport (JSON numbers, form strings, batch query strings).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from devtools.sandbox.errors import RestError

PAGE_SIZE = 50
MULTIFIELDS = ("EMAIL", "PHONE")
EMAIL_TYPES = ("WORK", "HOME", "MAILING", "OTHER")
PHONE_TYPES = ("WORK", "MOBILE", "FAX", "HOME", "PAGER", "MAILING", "OTHER")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Filter keys may start with an operator; longest first so that ">=" wins over ">".
_OPERATOR = re.compile(r"^(>=|<=|!=|!@|>|<|=|%|@|!)?(.+)$")


@dataclass(frozen=True)
class EntitySpec:
    name: str
    fields: dict[str, str]  # field -> type, as crm.*.fields reports it
    read_only: frozenset[str]
    not_found: str
    defaults: dict[str, str]
    # Taken by ``add``, ignored by ``update`` (facts: "CATEGORY_ID is immutable in crm.deal.update").
    immutable: frozenset[str] = frozenset()


_COMMON = {
    "ASSIGNED_BY_ID": "user",
    "COMMENTS": "string",
    "ORIGINATOR_ID": "string",
    "ORIGIN_ID": "string",
    "DATE_CREATE": "datetime",
    "DATE_MODIFY": "datetime",
    "CREATED_BY_ID": "user",
    "MODIFY_BY_ID": "user",
}
_READ_ONLY = frozenset({"ID", "DATE_CREATE", "DATE_MODIFY", "CREATED_BY_ID", "MODIFY_BY_ID", "HAS_EMAIL", "HAS_PHONE"})

DEAL = EntitySpec(
    name="deal",
    fields={
        "ID": "integer",
        "TITLE": "string",
        "TYPE_ID": "crm_status",
        "STAGE_ID": "crm_status",
        "CATEGORY_ID": "crm_category",
        "CURRENCY_ID": "crm_currency",
        "OPPORTUNITY": "double",
        "IS_MANUAL_OPPORTUNITY": "char",
        "CONTACT_ID": "crm_contact",
        **_COMMON,
    },
    read_only=_READ_ONLY,
    not_found="Not found",
    defaults={
        "TYPE_ID": "SALE",
        "STAGE_ID": "NEW",
        "CATEGORY_ID": "0",
        "CURRENCY_ID": "RUB",
        "OPPORTUNITY": "0.00",
        "IS_MANUAL_OPPORTUNITY": "N",
    },
    immutable=frozenset({"CATEGORY_ID"}),
)
CONTACT = EntitySpec(
    name="contact",
    fields={
        "ID": "integer",
        "NAME": "string",
        "SECOND_NAME": "string",
        "LAST_NAME": "string",
        "HAS_EMAIL": "char",
        "HAS_PHONE": "char",
        "EMAIL": "crm_multifield",
        "PHONE": "crm_multifield",
        **_COMMON,
    },
    read_only=_READ_ONLY,
    not_found="Contact is not found",
    defaults={},
)
ENTITIES = {"deal": DEAL, "contact": CONTACT}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def field_descriptions(spec: EntitySpec) -> dict[str, dict]:
    """What ``crm.*.fields`` answers."""
    return {
        name: {
            "type": kind,
            "isRequired": False,
            "isReadOnly": name in spec.read_only,
            "isImmutable": name in spec.immutable,
            "isMultiple": kind == "crm_multifield",
            "isDynamic": False,
            "title": name.replace("_", " ").title(),
        }
        for name, kind in spec.fields.items()
    }


# -- writing -------------------------------------------------------------------
def new_record(spec: EntitySpec, record_id: int, *, user_id: str) -> dict:
    record: dict[str, Any] = {name: None for name in spec.fields}
    record.update(spec.defaults)
    stamp = now_iso()
    record.update(ID=str(record_id), DATE_CREATE=stamp, DATE_MODIFY=stamp, CREATED_BY_ID=user_id)
    record.update(MODIFY_BY_ID=user_id, ASSIGNED_BY_ID=user_id)
    for name in MULTIFIELDS:
        if name in spec.fields:
            record[name] = []
    return record


def apply_fields(
    spec: EntitySpec,
    record: dict,
    fields: Any,
    *,
    creating: bool,
    new_id: Callable[[], int],
    user_id: str,
    userfields: dict[str, dict] | None = None,
) -> dict:
    """``record`` with ``fields`` applied (a new dict); raises ``RestError`` 400 ``ERROR_CORE`` on bad input.

    ``userfields``: the entity's custom fields (``UF_CRM_...`` -> description), stored as sent.
    """
    if not isinstance(fields, dict):
        raise RestError(400, "", "Parameter 'fields' must be array.")
    updated = dict(record)
    for name, value in fields.items():
        if userfields and name in userfields:
            updated[name] = _userfield_value(userfields[name], value)
            continue
        kind = spec.fields.get(name)
        if kind is None or name in spec.read_only or (name in spec.immutable and not creating):
            continue  # like the portal: unknown, read-only and (on update) immutable fields are ignored
        if kind == "crm_multifield":
            current = [] if creating else updated[name]
            updated[name] = merge_multifield(name, current, value, new_id=new_id)
        else:
            updated[name] = _coerce(kind, value)
    if spec is DEAL and not updated.get("TITLE"):
        updated["TITLE"] = f"Deal #{updated['ID']}"
    if spec is CONTACT:
        updated["HAS_EMAIL"] = "Y" if updated["EMAIL"] else "N"
        updated["HAS_PHONE"] = "Y" if updated["PHONE"] else "N"
    updated["DATE_MODIFY"], updated["MODIFY_BY_ID"] = now_iso(), user_id
    return updated


def _userfield_value(description: dict, value: Any) -> str | list[str] | None:
    """A multiple field keeps a list (an array from JSON or ``[0]``, ``[1]``... from a query string)."""
    if description.get("MULTIPLE") == "Y":
        return [str(v) for v in _values(value) if v not in (None, "")]
    if isinstance(value, dict | list):
        return None
    return None if value is None or value == "" else str(value)


def _coerce(kind: str, value: Any) -> str | None:
    if isinstance(value, dict | list):
        value = None
    if value is None or value == "":
        return None if kind != "double" else "0.00"
    if kind == "double":
        try:
            return f"{Decimal(str(value)).quantize(Decimal('0.01'))}"
        except InvalidOperation:
            return "0.00"  # the portal turns garbage into zero
    if kind in ("user", "crm_contact", "crm_category", "integer"):
        text = str(value).strip()
        lowest = 0 if kind == "crm_category" else 1  # pipeline 0 is the default one
        return text if text.isdigit() and int(text) >= lowest else None
    if isinstance(value, bool):
        return "Y" if value else "N"
    return str(value)


def merge_multifield(name: str, current: list[dict], incoming: Any, *, new_id: Callable[[], int]) -> list[dict]:
    """The portal's rules: no ``ID`` appends; ``ID`` + ``VALUE`` overwrites; ``ID`` + ``DELETE=Y`` or empty removes."""
    entries = [dict(entry) for entry in current]
    by_id = {entry["ID"]: entry for entry in entries}
    for item in _values(incoming):
        if not isinstance(item, dict):
            continue
        entry_id = str(item.get("ID") or "")
        value = "" if item.get("VALUE") is None else str(item.get("VALUE")).strip()
        if entry_id:
            target = by_id.get(entry_id)
            if target is None:
                continue
            if str(item.get("DELETE", "")).upper() in ("Y", "1", "TRUE") or ("VALUE" in item and not value):
                entries.remove(target)
                continue
            if "VALUE" in item:
                target["VALUE"] = _checked(name, value)
            target["VALUE_TYPE"] = _value_type(name, item.get("VALUE_TYPE"), target["VALUE_TYPE"])
        elif value:
            entry = {"ID": str(new_id()), "VALUE_TYPE": _value_type(name, item.get("VALUE_TYPE"), "WORK")}
            entries.append({**entry, "VALUE": _checked(name, value), "TYPE_ID": name})
    return entries


def _checked(name: str, value: str) -> str:
    if name == "EMAIL" and not _EMAIL.match(value):
        raise RestError(400, "ERROR_CORE", f"Invalid e-mail address: {value}")
    return value


def _value_type(name: str, given: Any, default: str) -> str:
    allowed = EMAIL_TYPES if name == "EMAIL" else PHONE_TYPES
    text = str(given or "").upper()
    return text if text in allowed else default


def as_list(value: Any) -> list:
    """A PHP array from JSON (list) or from a query string (dict ``{"0": ...}``) as a list."""
    return _values(value)


def _values(value: Any) -> list:
    """A PHP array from JSON (list) or from a query string (dict ``{"0": ...}``) as a list."""
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return value
    return [] if value is None or value == "" else [value]


def rows_total(rows: list[dict]) -> str:
    """``OPPORTUNITY`` from product rows: the sum of price x quantity, to the cent."""
    total = sum((Decimal(row["_PRICE_TEXT"]) * Decimal(str(row["QUANTITY"])) for row in rows), Decimal(0))
    return str(total.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


# -- reading ---------------------------------------------------------------------
def as_answer(record: dict) -> dict:
    """A copy for an answer; empty multifields are left out, as the portal does."""
    answer = {}
    for name, value in record.items():
        if isinstance(value, list):
            if value:
                answer[name] = [dict(entry) if isinstance(entry, dict) else entry for entry in value]
        else:
            answer[name] = value
    return answer


@dataclass(frozen=True)
class ListQuery:
    filter: dict
    select: list[str]
    order: dict
    start: int  # -1: do not count

    @classmethod
    def from_params(cls, params: dict) -> ListQuery:
        filters = params.get("filter") or {}
        order = params.get("order") or {"ID": "ASC"}
        if not isinstance(filters, dict) or not isinstance(order, dict):
            raise RestError(400, "ERROR_ARGUMENT", "filter and order must be objects")
        try:
            start = int(params.get("start") or 0)
        except (TypeError, ValueError):
            start = 0
        return cls(filter=filters, select=[str(s) for s in _values(params.get("select"))], order=order, start=start)

    def origin_lookup(self) -> str | None:
        """The ``ORIGIN_ID`` an equality filter names, so the store can use its index."""
        for key in ("ORIGIN_ID", "=ORIGIN_ID"):
            value = self.filter.get(key)
            if isinstance(value, str | int):
                return str(value)
        return None


def run_list(spec: EntitySpec, records: Iterable[dict], query: ListQuery) -> tuple[list[dict], int | None, int | None]:
    """``(page, total, next)`` for ``crm.*.list``; ``total``/``next`` are ``None`` when not counted or last."""
    matched = [r for r in records if all(_matches(r, key, value) for key, value in query.filter.items())]
    for name, direction in reversed(list(query.order.items())):
        descending = str(direction).upper() == "DESC"
        matched.sort(key=lambda r, n=name: _sort_key(r.get(n)), reverse=descending)
    start = max(query.start, 0)
    page = [_selected(spec, r, query.select) for r in matched[start : start + PAGE_SIZE]]
    if query.start < 0:
        return page, None, None
    following = start + PAGE_SIZE
    return page, len(matched), following if following < len(matched) else None


def _matches(record: dict, key: str, expected: Any) -> bool:
    operator, name = _OPERATOR.match(str(key)).groups()
    actual = record.get(name)
    values = [e.get("VALUE") for e in actual] if isinstance(actual, list) else [actual]
    wanted = [str(v) for v in _values(expected)] if isinstance(expected, dict | list) else [str(expected)]
    texts = ["" if v is None else str(v) for v in values]
    if operator in (None, "=", "@"):
        return any(t in wanted for t in texts)
    if operator in ("!", "!=", "!@"):
        return all(t not in wanted for t in texts)
    if operator == "%":
        return any(wanted[0].lower() in t.lower() for t in texts)
    return any(_compare(operator, t, wanted[0]) for t in texts)


def _compare(operator: str, actual: str, wanted: str) -> bool:
    left, right = _sort_key(actual), _sort_key(wanted)
    if left[0] != right[0]:
        return False
    return {">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right}[operator]


def _sort_key(value: Any) -> tuple[int, Any]:
    text = "" if value is None else str(value)
    try:
        return (0, Decimal(text))
    except InvalidOperation:
        return (1, text)


def _selected(spec: EntitySpec, record: dict, select: list[str]) -> dict:
    """``select`` as the portal reads it: ``*`` or nothing means every scalar field; ``ID`` always."""
    names = [n for n in spec.fields if spec.fields[n] != "crm_multifield"]
    if select and "*" not in select:
        names = ["ID", *[n for n in select if n in spec.fields and n != "ID"]]
    else:
        names += [n for n in select if spec.fields.get(n) == "crm_multifield"]
    return as_answer({name: record.get(name) for name in names})
