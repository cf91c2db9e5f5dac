"""What a portal is set up with: deal pipelines, their stages, custom fields.

A real portal's administrator makes these in the UI; the sandbox takes them
from ``SandboxServer(setup=...)``, ``bitrix_sandbox --setup FILE`` or
``POST /_sandbox/setup``, as JSON::

    {"categories": {"3": "Wholesale"},                 # id -> name; 0 "General" always exists
     "stages": {"3": ["NEW", "EXECUTING", "WON"]},     # optional; default: DEFAULT_STAGES
     "userfields": {"deal": [{"FIELD_NAME": "UF_CRM_MATERIAL", "USER_TYPE_ID": "enumeration",
                              "MULTIPLE": "N", "LIST": [{"VALUE": "Steel"}]}],
                    "contact": [...]}}

Stages are given without their prefix; pipeline N's stage ids are ``C<N>:<stage>``
(facts document, "Pipelines"). List items get IDs when they have none.

A setup of the wrong shape raises ``SetupError`` (a ``ValueError``: a 400 at the
control endpoint) naming the part and what it should be, and changes nothing:
the whole setup is checked before any of it is applied.
"""

from __future__ import annotations

import threading
from typing import Any

DEFAULT_CATEGORY_NAME = "General"
DEFAULT_STAGES = ("NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "FINAL_INVOICE", "WON", "LOSE", "APOLOGY")
USERFIELD_ENTITIES = {"deal": "CRM_DEAL", "contact": "CRM_CONTACT"}


SETUP_KEYS = ("categories", "stages", "userfields")
YES_NO = ("Y", "N")


class SetupError(ValueError):
    """A setup that cannot be applied; the message names the part (``stages['3']``) and what it should be."""


def stage_id(category: int, stage: str) -> str:
    """``stage_id(0, "NEW") == "NEW"``, ``stage_id(3, "NEW") == "C3:NEW"``."""
    return stage if category == 0 else f"C{category}:{stage}"


class PortalSetup:
    def __init__(self, setup: dict | None = None) -> None:
        self._lock = threading.Lock()
        self.categories: dict[int, str] = {0: DEFAULT_CATEGORY_NAME}
        self.stages: dict[int, list[str]] = {}
        self.userfields: dict[str, list[dict]] = {entity: [] for entity in USERFIELD_ENTITIES}
        self._next_id = 1
        if setup:
            self.configure(setup)

    def configure(self, setup: Any) -> dict:
        """Add or replace what ``setup`` names (see the module docstring); the whole setup.

        ``SetupError`` for a setup of the wrong shape, before anything changes.
        """
        categories, stages, userfields = checked_setup(setup)
        with self._lock:
            self.categories.update(categories)
            self.stages.update(stages)
            for entity, fields in userfields.items():
                self.userfields[entity] = [self._userfield(entity, f) for f in fields]
        return self.snapshot()

    def snapshot(self) -> dict:
        return {
            "categories": {str(k): v for k, v in sorted(self.categories.items())},
            "stages": {str(k): self.stage_names(k) for k in sorted(self.categories)},
            "userfields": {entity: [dict(f) for f in fields] for entity, fields in self.userfields.items()},
        }

    # -- questions the methods ask ------------------------------------------------------
    def stage_names(self, category: int) -> list[str]:
        return list(self.stages.get(category, DEFAULT_STAGES))

    def stage_ids(self, category: int) -> list[str]:
        """Pipeline ``category``'s stage ids, prefixed; ``[]`` for a pipeline that does not exist."""
        if category not in self.categories:
            return []
        return [stage_id(category, name) for name in self.stage_names(category)]

    def userfield_names(self, entity: str) -> set[str]:
        return {f["FIELD_NAME"] for f in self.userfields.get(entity, [])}

    def _userfield(self, entity: str, raw: dict) -> dict:
        """The field as ``*.userfield.list`` answers it, from one ``checked_userfield`` (IDs given here)."""
        field: dict[str, Any] = {
            "ID": str(self._take_id()),
            "ENTITY_ID": USERFIELD_ENTITIES[entity],
            "FIELD_NAME": raw["FIELD_NAME"],
            "USER_TYPE_ID": raw.get("USER_TYPE_ID") or "string",
            "MULTIPLE": raw.get("MULTIPLE", "N").upper(),
            "MANDATORY": "N",
        }
        if field["USER_TYPE_ID"] == "enumeration":
            field["LIST"] = [
                {"ID": str(item.get("ID") or self._take_id()), "VALUE": item.get("VALUE", ""),
                 "DEF": item.get("DEF", "N").upper(), "SORT": str(item.get("SORT", 10 * (i + 1)))}
                for i, item in enumerate(raw.get("LIST") or [])
            ]  # fmt: skip
        return field

    def _take_id(self) -> int:
        value = self._next_id
        self._next_id += 1
        return value


# -- checking a setup before any of it is applied --------------------------------------------


def checked_setup(setup: Any) -> tuple[dict[int, str], dict[int, list[str]], dict[str, list[dict]]]:
    """Categories, stages and userfields of ``setup``, checked; ``SetupError`` naming the first wrong part."""
    setup = _object(setup, "the setup")
    unknown = sorted(set(setup) - set(SETUP_KEYS))
    if unknown:
        raise SetupError(f"unknown setup keys {unknown}; known: {', '.join(SETUP_KEYS)}")
    categories = {
        _category_id(raw_id, "categories"): _string(name, f"categories[{raw_id!r}]")
        for raw_id, name in _object(setup.get("categories"), "categories").items()
    }
    stages = {
        _category_id(raw_id, "stages"): _stage_names(names, f"stages[{raw_id!r}]")
        for raw_id, names in _object(setup.get("stages"), "stages").items()
    }
    userfields = {}
    for entity, fields in _object(setup.get("userfields"), "userfields").items():
        if entity not in USERFIELD_ENTITIES:
            raise SetupError(f"userfields: {entity!r} is not one of {', '.join(USERFIELD_ENTITIES)}")
        where = f"userfields[{entity!r}]"
        userfields[entity] = [checked_userfield(f, f"{where}[{i}]") for i, f in enumerate(_list(fields, where))]
    return categories, stages, userfields


def checked_userfield(raw: Any, where: str) -> dict:
    """One userfield of a setup, checked (its types; ``FIELD_NAME`` present and ``UF_CRM_...``)."""
    raw = _object(raw, where, allow_none=False)
    if "FIELD_NAME" not in raw:
        raise SetupError(f"{where}: FIELD_NAME is missing")
    name = raw["FIELD_NAME"]
    if not isinstance(name, str) or not name.startswith("UF_CRM_") or name == "UF_CRM_":
        raise SetupError(f"{where}: FIELD_NAME must be a string starting with UF_CRM_, got {name!r}")
    _string(raw.get("USER_TYPE_ID", "string"), f"{where}.USER_TYPE_ID")
    _yes_no(raw.get("MULTIPLE", "N"), f"{where}.MULTIPLE")
    items = _list(raw.get("LIST", []), f"{where}.LIST")
    for i, item in enumerate(items):
        item = _object(item, f"{where}.LIST[{i}]", allow_none=False)
        _string(item.get("VALUE", ""), f"{where}.LIST[{i}].VALUE", empty=True)
        _yes_no(item.get("DEF", "N"), f"{where}.LIST[{i}].DEF")
        for key in ("ID", "SORT"):
            if key in item and not _is_whole_number(item[key]):
                raise SetupError(f"{where}.LIST[{i}].{key} must be a whole number, got {item[key]!r}")
    return raw


def _object(value: Any, where: str, *, allow_none: bool = True) -> dict:
    if value is None and allow_none:
        return {}
    if not isinstance(value, dict):
        raise SetupError(f"{where} must be a JSON object, got {_kind(value)}")
    return value


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise SetupError(f"{where} must be a list, got {_kind(value)}")
    return value


def _string(value: Any, where: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty):
        raise SetupError(f"{where} must be a non-empty string, got {_kind(value)}")
    return value


def _stage_names(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(s, str) and s for s in value):
        raise SetupError(f"{where} must be a list of strings (stage names without the C<id>: prefix)")
    return list(value)


def _yes_no(value: Any, where: str) -> None:
    if not isinstance(value, str) or value.upper() not in YES_NO:
        raise SetupError(f'{where} must be "Y" or "N", got {value!r}')


def _category_id(raw: Any, where: str) -> int:
    """A pipeline id: a whole number from 0 (JSON keys are strings: "3"; a Python setup may give 3)."""
    if not _is_whole_number(raw):
        raise SetupError(f"{where}: {raw!r} is not a pipeline id (a whole number, 0 or more)")
    return int(raw)


def _is_whole_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, str) and value.isascii() and value.isdigit()


def _kind(value: Any) -> str:
    """What a JSON value is, for a message: "a list", "a string ('NEW')", "null"."""
    if value is None:
        return "null"
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    shown = f" ({value!r})" if isinstance(value, str | int | float) and not isinstance(value, bool) else ""
    return names.get(type(value), type(value).__name__) + shown[:60]
