"""The REST methods the sandbox implements (``batch`` aside: see ``portal``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from devtools.sandbox import crm
from devtools.sandbox.duplicates import find_by_communication
from devtools.sandbox.errors import RestError
from devtools.sandbox.events import EventSender
from devtools.sandbox.portal_setup import PortalSetup
from devtools.sandbox.store import RecordStore


@dataclass
class Outcome:
    result: Any
    total: int | None = None
    next: int | None = None


@dataclass(frozen=True)
class Caller:
    user_id: str
    own: bool  # the integration's own webhook, as opposed to a manager or the control API


Method = Callable[[dict, Caller], Outcome]
_DEAL_EVENTS = {"add": "ONCRMDEALADD", "update": "ONCRMDEALUPDATE", "delete": "ONCRMDEALDELETE"}


class CrmMethods:
    def __init__(self, store: RecordStore, events: EventSender, setup: PortalSetup | None = None) -> None:
        self.store = store
        self.events = events
        self.setup = setup or PortalSetup()

    def table(self) -> dict[str, Method]:
        """Method name (lower case) -> handler."""
        methods: dict[str, Method] = {"profile": self.profile}
        methods["crm.duplicate.findbycomm"] = lambda params, caller: Outcome(find_by_communication(self.store, params))
        for spec in crm.ENTITIES.values():
            prefix = f"crm.{spec.name}"
            methods[f"{prefix}.add"] = partial(self.add, spec)
            methods[f"{prefix}.update"] = partial(self.update, spec)
            methods[f"{prefix}.get"] = partial(self.get, spec)
            methods[f"{prefix}.list"] = partial(self.list, spec)
            methods[f"{prefix}.delete"] = partial(self.delete, spec)
            methods[f"{prefix}.fields"] = lambda params, caller, s=spec: Outcome(crm.field_descriptions(s))
        return methods

    def profile(self, params: dict, caller: Caller) -> Outcome:
        return Outcome({"ID": caller.user_id, "ADMIN": True, "NAME": "Sandbox", "LAST_NAME": "Portal"})

    def add(self, spec: crm.EntitySpec, params: dict, caller: Caller) -> Outcome:
        with self.store.lock:
            record_id = self.store.next_id(spec.name)
            record = crm.new_record(spec, record_id, user_id=caller.user_id)
            record = self._apply(spec, record, params, caller, creating=True)
            self.store.save(spec.name, record)
        self._notify(spec, "add", record_id, caller)
        return Outcome(record_id)

    def update(self, spec: crm.EntitySpec, params: dict, caller: Caller) -> Outcome:
        record_id = _record_id(params)
        with self.store.lock:
            record = self._existing(spec, record_id)
            self.store.save(spec.name, self._apply(spec, record, params, caller, creating=False))
        self._notify(spec, "update", record_id, caller)
        return Outcome(True)

    def get(self, spec: crm.EntitySpec, params: dict, caller: Caller) -> Outcome:
        return Outcome(crm.as_answer(self._existing(spec, _record_id(params))))

    def delete(self, spec: crm.EntitySpec, params: dict, caller: Caller) -> Outcome:
        record_id = _record_id(params)
        with self.store.lock:
            self._existing(spec, record_id)
            self.store.delete(spec.name, record_id)
        self._notify(spec, "delete", record_id, caller)
        return Outcome(True)

    def list(self, spec: crm.EntitySpec, params: dict, caller: Caller) -> Outcome:
        query = crm.ListQuery.from_params(params)
        origin = query.origin_lookup()
        records = self.store.all(spec.name) if origin is None else self.store.with_origin(spec.name, origin)
        page, total, following = crm.run_list(spec, records, query)
        return Outcome(page, total, following)

    # -- internals ----------------------------------------------------------------
    def _existing(self, spec: crm.EntitySpec, record_id: int) -> dict:
        record = self.store.get(spec.name, record_id)
        if record is None:
            raise RestError(400, "", spec.not_found)
        return record

    def _apply(self, spec: crm.EntitySpec, record: dict, params: dict, caller: Caller, *, creating: bool) -> dict:
        def new_multifield_id() -> int:
            return self.store.next_id("multifield")

        fields = params.get("fields")
        userfields = {f["FIELD_NAME"]: f for f in self.setup.userfields.get(spec.name, [])}
        updated = crm.apply_fields(
            spec, record, fields, creating=creating, new_id=new_multifield_id, user_id=caller.user_id,
            userfields=userfields,
        )  # fmt: skip
        if spec is crm.DEAL:
            self._deal_rules(updated, fields if isinstance(fields, dict) else {}, creating=creating)
        return updated

    def _deal_rules(self, deal: dict, fields: dict, *, creating: bool) -> None:
        """A new deal in pipeline N starts at its first stage; a deal with rows (and IS_MANUAL_OPPORTUNITY N)
        has the rows' sum as OPPORTUNITY (facts document, "CRM depth")."""
        category = int(deal.get("CATEGORY_ID") or 0)
        if creating and category and "STAGE_ID" not in fields:
            deal["STAGE_ID"] = (self.setup.stage_ids(category) or [deal["STAGE_ID"]])[0]
        rows = self.store.rows(int(deal["ID"]))
        if rows and deal.get("IS_MANUAL_OPPORTUNITY") != "Y":
            deal["OPPORTUNITY"] = crm.rows_total(rows)

    def notify_deal_update(self, deal_id: int, caller: Caller) -> None:
        self._notify(crm.DEAL, "update", deal_id, caller)

    def _notify(self, spec: crm.EntitySpec, change: str, record_id: int, caller: Caller) -> None:
        if spec is crm.DEAL:
            self.events.deal_changed(_DEAL_EVENTS[change], record_id, own_change=caller.own)


def _record_id(params: dict) -> int:
    raw = str(params.get("id") or "").strip()
    if not raw.isdigit() or int(raw) <= 0:
        raise RestError(400, "", "ID is not defined or invalid.")
    return int(raw)
