"""What a deal needs besides its ``add`` / ``update``: a move to another pipeline, its product rows.

In the same ``batch`` as the deal's own command, in this order:

1. ``m<id>``: ``crm.item.update {entityTypeId: 2, id, fields: {categoryId, stageId}}`` when
   the order's service now maps to another pipeline than the deal's (``CATEGORY_ID`` is
   immutable in ``crm.deal.update``; facts document, "Pipelines"). Before the update, so
   that the update's ``STAGE_ID`` (a stage of the new pipeline) fits the deal.
2. ``d<id>``: the deal's ``add`` (with ``CATEGORY_ID``) or ``update``.
3. ``r<id>``: ``crm.deal.productrows.set`` when the rows changed since they were last sent
   (``Order.bitrix_rows_hash``) or the deal is new; ``id`` is ``$result[d<id>]`` for a new deal.

Cost per order: a new deal 2 commands; an update 1, or 2 when the rows changed; a move
one more (the rare case of a service changing to one in another pipeline).
"""

from __future__ import annotations

from dataclasses import dataclass

from crmbridge.bitrix import pipelines, product_rows
from crmbridge.bitrix.commands import result_ref

DEAL_ENTITY_TYPE_ID = 2
Commands = dict[str, tuple[str, dict]]


@dataclass(frozen=True)
class DealPlan:
    category: int
    move: bool  # the deal exists in another pipeline
    rows: list[dict] | None  # None: unchanged since last sent, not sent again
    rows_hash: str

    @property
    def command_count(self) -> int:
        return 1 + int(self.move) + int(self.rows is not None)


def plan_deal(order, *, creating: bool) -> DealPlan:
    category = pipelines.category_for_service(order.service_id)
    rows = product_rows.rows_for(order)
    digest = product_rows.fingerprint(rows)
    if creating:
        return DealPlan(category, move=False, rows=rows, rows_hash=digest)
    current = order.bitrix_category_id or 0  # NULL: synced before pipelines, i.e. the default pipeline
    changed = digest != order.bitrix_rows_hash
    return DealPlan(category, move=category != current, rows=rows if changed else None, rows_hash=digest)


def move_key(local_id: int) -> str:
    return f"m{local_id}"


def rows_key(local_id: int) -> str:
    return f"r{local_id}"


def around(local_id: int, plan: DealPlan, *, deal_id: int | None, stage: str) -> tuple[Commands, Commands]:
    """``(before, after)``: the commands to send before and after the deal's own (``d<id>``)."""
    target = deal_id if deal_id is not None else result_ref(f"d{local_id}")
    before: Commands = {}
    after: Commands = {}
    if plan.move and deal_id is not None:
        fields = {"categoryId": plan.category, "stageId": stage}
        params = {"entityTypeId": DEAL_ENTITY_TYPE_ID, "id": deal_id, "fields": fields}
        before[move_key(local_id)] = ("crm.item.update", params)
    if plan.rows is not None:
        after[rows_key(local_id)] = ("crm.deal.productrows.set", {"id": target, "rows": plan.rows})
    return before, after
