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
"""

from __future__ import annotations

import threading
from typing import Any

DEFAULT_CATEGORY_NAME = "General"
DEFAULT_STAGES = ("NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "FINAL_INVOICE", "WON", "LOSE", "APOLOGY")
USERFIELD_ENTITIES = {"deal": "CRM_DEAL", "contact": "CRM_CONTACT"}


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

    def configure(self, setup: dict) -> dict:
        """Add or replace what ``setup`` names (see the module docstring); the whole setup."""
        with self._lock:
            for raw_id, name in (setup.get("categories") or {}).items():
                self.categories[int(raw_id)] = str(name)
            for raw_id, stages in (setup.get("stages") or {}).items():
                self.stages[int(raw_id)] = [str(s) for s in stages]
            for entity, fields in (setup.get("userfields") or {}).items():
                if entity not in USERFIELD_ENTITIES:
                    raise ValueError(f"userfields: entity must be one of {sorted(USERFIELD_ENTITIES)}")
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
        name = str(raw.get("FIELD_NAME") or "")
        if not name.startswith("UF_CRM_"):
            raise ValueError(f"userfield names start with UF_CRM_, got {name!r}")
        field: dict[str, Any] = {
            "ID": str(self._take_id()),
            "ENTITY_ID": USERFIELD_ENTITIES[entity],
            "FIELD_NAME": name,
            "USER_TYPE_ID": str(raw.get("USER_TYPE_ID") or "string"),
            "MULTIPLE": "Y" if str(raw.get("MULTIPLE", "N")).upper() == "Y" else "N",
            "MANDATORY": "N",
        }
        if field["USER_TYPE_ID"] == "enumeration":
            field["LIST"] = [
                {"ID": str(item.get("ID") or self._take_id()), "VALUE": str(item.get("VALUE", "")),
                 "DEF": item.get("DEF", "N"), "SORT": str(item.get("SORT", 10 * (i + 1)))}
                for i, item in enumerate(raw.get("LIST") or [])
            ]  # fmt: skip
        return field

    def _take_id(self) -> int:
        value = self._next_id
        self._next_id += 1
        return value
