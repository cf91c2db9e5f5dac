"""Product rows, pipelines, stages and custom-field lists, as the portal serves them.

The facts: ``/work/shared/docs/bitrix24-rest-facts.md``, section "CRM depth".

* ``crm.deal.productrows.set`` replaces every row of the deal; with
  ``IS_MANUAL_OPPORTUNITY`` N the deal's ``OPPORTUNITY`` becomes the rows' sum.
  ``.get`` answers the rows with ``ID`` and ``OWNER_TYPE: "D"``.
* ``crm.item.update`` (``entityTypeId`` 2) is the one way to move a deal to another
  pipeline (``crm.deal.update`` ignores ``CATEGORY_ID``: see ``crm.apply_fields``).
* ``crm.category.list``, ``crm.status.list``, ``crm.deal.userfield.list`` and
  ``crm.contact.userfield.list`` read ``PortalSetup``; the userfield lists page by 50
  like every ``*.list`` (``start``, ``total``, ``next``).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from devtools.sandbox import crm
from devtools.sandbox.errors import RestError
from devtools.sandbox.methods import Outcome
from devtools.sandbox.portal_setup import PortalSetup
from devtools.sandbox.store import RecordStore

MEASURE_PIECES = 796
DEAL_ENTITY_TYPE_ID = 2


class DealDepthMethods:
    def __init__(self, store: RecordStore, setup: PortalSetup, notify_deal_update) -> None:
        self.store = store
        self.setup = setup
        self._notify_deal_update = notify_deal_update  # (deal_id, caller): the event a change fires

    def table(self) -> dict:
        return {
            "crm.deal.productrows.set": self.set_rows,
            "crm.deal.productrows.get": self.get_rows,
            "crm.item.update": self.item_update,
            "crm.category.list": self.category_list,
            "crm.status.list": self.status_list,
            "crm.deal.userfield.list": lambda params, caller: _page(self.setup.userfields["deal"], params),
            "crm.contact.userfield.list": lambda params, caller: _page(self.setup.userfields["contact"], params),
        }

    # -- product rows --------------------------------------------------------------------
    def set_rows(self, params: dict, caller):
        deal_id = _deal_id(params)
        with self.store.lock:
            deal = self._deal(deal_id)
            rows = [self._row(deal_id, raw, index) for index, raw in enumerate(crm.as_list(params.get("rows")))]
            self.store.set_rows(deal_id, rows)
            if deal.get("IS_MANUAL_OPPORTUNITY") != "Y":
                self.store.save("deal", {**deal, "OPPORTUNITY": crm.rows_total(rows), "DATE_MODIFY": crm.now_iso()})
        self._notify_deal_update(deal_id, caller)
        return _outcome(True)

    def get_rows(self, params: dict, caller):
        deal_id = _deal_id(params)
        self._deal(deal_id)
        return _outcome([{k: v for k, v in row.items() if not k.startswith("_")} for row in self.store.rows(deal_id)])

    def _row(self, deal_id: int, raw: Any, index: int) -> dict:
        if not isinstance(raw, dict):
            raise RestError(400, "ERROR_CORE", "Each row must be an array of fields")
        return {
            "ID": self.store.next_id("productrow"),
            "OWNER_ID": deal_id,
            "OWNER_TYPE": "D",
            "PRODUCT_ID": _int(raw.get("PRODUCT_ID"), 0),
            "PRODUCT_NAME": str(raw.get("PRODUCT_NAME") or ""),
            "PRICE": float(_decimal(raw.get("PRICE"), "0")),
            "QUANTITY": float(_decimal(raw.get("QUANTITY"), "1")),
            "DISCOUNT_TYPE_ID": _int(raw.get("DISCOUNT_TYPE_ID"), 2),
            "DISCOUNT_RATE": float(_decimal(raw.get("DISCOUNT_RATE"), "0")),
            "DISCOUNT_SUM": float(_decimal(raw.get("DISCOUNT_SUM"), "0")),
            "TAX_RATE": None if raw.get("TAX_RATE") in (None, "") else float(_decimal(raw.get("TAX_RATE"), "0")),
            "TAX_INCLUDED": "Y" if str(raw.get("TAX_INCLUDED", "N")).upper() == "Y" else "N",
            "MEASURE_CODE": _int(raw.get("MEASURE_CODE"), MEASURE_PIECES),
            "MEASURE_NAME": str(raw.get("MEASURE_NAME") or "pcs"),
            "SORT": _int(raw.get("SORT"), 10 * (index + 1)),
            # The exact text sent: the sum is made from it, not from the float answered.
            "_PRICE_TEXT": str(_decimal(raw.get("PRICE"), "0")),
        }

    # -- pipelines -------------------------------------------------------------------------
    def item_update(self, params: dict, caller):
        if _int(params.get("entitytypeid"), 0) != DEAL_ENTITY_TYPE_ID:
            raise RestError(400, "NOT_FOUND", "Smart process not found")
        deal_id = _deal_id(params)
        fields = {str(k).lower(): v for k, v in (params.get("fields") or {}).items()}
        with self.store.lock:
            deal = self._deal(deal_id, code="NOT_FOUND")
            category = _int(fields.get("categoryid"), int(deal.get("CATEGORY_ID") or 0))
            stages = self.setup.stage_ids(category)
            if not stages:
                raise RestError(400, "CATEGORY_NOT_FOUND", f"Pipeline {category} not found")
            stage = str(fields.get("stageid") or "")
            if not stage:
                stage = deal["STAGE_ID"] if deal["STAGE_ID"] in stages else stages[0]
            if stage not in stages:
                raise RestError(400, "STAGE_NOT_FOUND", f"Stage {stage} does not belong to pipeline {category}")
            deal = {**deal, "CATEGORY_ID": str(category), "STAGE_ID": stage, "DATE_MODIFY": crm.now_iso()}
            self.store.save("deal", deal)
        self._notify_deal_update(deal_id, caller)
        item = {"id": deal_id, "entityTypeId": DEAL_ENTITY_TYPE_ID, "categoryId": category, "stageId": stage}
        return _outcome({"item": {**item, "opportunity": float(deal["OPPORTUNITY"] or 0), "title": deal["TITLE"]}})

    def category_list(self, params: dict, caller):
        if _int(params.get("entitytypeid"), 0) != DEAL_ENTITY_TYPE_ID:
            return _outcome({"categories": []})
        categories = [
            {"id": cid, "name": name, "sort": 100 * (i + 1), "entityTypeId": DEAL_ENTITY_TYPE_ID,
             "isDefault": "Y" if cid == 0 else "N"}
            for i, (cid, name) in enumerate(sorted(self.setup.categories.items()))
        ]  # fmt: skip
        return _outcome({"categories": categories})

    def status_list(self, params: dict, caller):
        wanted = str((params.get("filter") or {}).get("ENTITY_ID") or "")
        statuses = []
        for category in sorted(self.setup.categories):
            entity_id = "DEAL_STAGE" if category == 0 else f"DEAL_STAGE_{category}"
            if wanted and wanted != entity_id:
                continue
            for i, stage in enumerate(self.setup.stage_ids(category)):
                statuses.append(
                    {"ID": str(len(statuses) + 1), "ENTITY_ID": entity_id, "STATUS_ID": stage, "NAME": stage,
                     "SORT": str(10 * (i + 1)), "SYSTEM": "N", "CATEGORY_ID": str(category)}
                )  # fmt: skip
        return _outcome(statuses)

    def _deal(self, deal_id: int, code: str = "") -> dict:
        deal = self.store.get("deal", deal_id)
        if deal is None:
            raise RestError(400, code, crm.DEAL.not_found)
        return deal


def _outcome(result: Any) -> Outcome:
    return Outcome(result)


def _page(items: list, params: dict) -> Outcome:
    """A ``*.list`` page: 50 items from ``start``, ``total``, and ``next`` only when more exist (facts, "Answers")."""
    start = max(_int(params.get("start"), 0), 0)
    following = start + crm.PAGE_SIZE
    return Outcome(list(items[start:following]), len(items), following if following < len(items) else None)


def _deal_id(params: dict) -> int:
    raw = str(params.get("id") or "").strip()
    if not raw.isdigit() or int(raw) <= 0:
        raise RestError(400, "", "ID is not defined or invalid.")
    return int(raw)


def _int(value: Any, default: int) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def _decimal(value: Any, default: str) -> Decimal:
    try:
        return Decimal(str(value).strip()) if value not in (None, "") else Decimal(default)
    except InvalidOperation:
        return Decimal(default)
