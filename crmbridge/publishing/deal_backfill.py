"""What a resync would change on deals already synced (issue 20 item 7): rows, pipeline, custom fields.

The worker brings a deal up to date whenever it syncs the order: product rows go
when their fingerprint differs from the one stored on the order (``""`` for a deal
synced before rows existed), a move when the service's pipeline differs from the
stored one (``NULL`` = the default pipeline). ``bitrix_resync`` queues the orders;
this module tells it (and its ``--dry-run``) which deals that changes, without asking
the portal. Custom fields cannot be compared locally: when ``BITRIX_DEAL_FIELDS`` is
set, every synced deal counts as getting them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.db import models

from crmbridge.bitrix import pipelines, product_rows

CHUNK = 500


@dataclass(frozen=True)
class DealChange:
    order_id: int
    deal_id: int
    rows: str  # "" when unchanged; else what the new row shows
    move: tuple[int, int] | None  # (from, to) pipeline
    fields: bool  # custom fields are written

    @property
    def changed(self) -> bool:
        return bool(self.rows or self.move or self.fields)

    def describe(self) -> str:
        parts = [f"rows -> {self.rows}"] if self.rows else []
        if self.move:
            parts.append(f"pipeline {self.move[0]} -> {self.move[1]}")
        if self.fields:
            parts.append("custom fields")
        return f"order {self.order_id} (deal {self.deal_id}): {'; '.join(parts) or 'up to date'}"


def deal_change(order) -> DealChange:
    rows = product_rows.rows_for(order)
    shown = ""
    if product_rows.fingerprint(rows) != order.bitrix_rows_hash:
        shown = ", ".join(f"{r['PRODUCT_NAME']} x {r['QUANTITY']} at {r['PRICE']}" for r in rows)
    current, target = order.bitrix_category_id or 0, pipelines.category_for_service(order.service_id)
    move = (current, target) if current != target else None
    return DealChange(order.pk, order.bitrix_deal_id, shown, move, fields=bool(settings.BITRIX_DEAL_FIELDS))


def synced_deal_changes(orders: models.QuerySet) -> Iterator[DealChange]:
    """A ``DealChange`` for every order of ``orders`` that has a deal, in primary-key chunks."""
    queryset = orders.filter(bitrix_deal_id__isnull=False).order_by("pk")
    last = 0
    while True:
        page = list(queryset.filter(pk__gt=last)[:CHUNK])
        if not page:
            return
        yield from (deal_change(order) for order in page)
        last = page[-1].pk


@dataclass
class BackfillSummary:
    synced: int = 0
    rows: int = 0
    fields: int = 0
    moves: Counter = field(default_factory=Counter)  # (from, to) -> deals
    examples: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        moves = ", ".join(f"{a} -> {b}: {n}" for (a, b), n in sorted(self.moves.items()))
        total_moves = sum(self.moves.values())
        lines = [
            f"Deals already synced: {self.synced}; product rows to send: {self.rows}; "
            f"to move to another pipeline: {total_moves}{f' ({moves})' if moves else ''}; "
            f"custom fields to write: {self.fields}"
        ]
        return lines + [f"  {example}" for example in self.examples]


def summarize(changes: Iterator[DealChange], *, examples: int = 10) -> tuple[BackfillSummary, list[int]]:
    """The summary, and the orders whose deal would change."""
    summary = BackfillSummary()
    changed: list[int] = []
    for change in changes:
        summary.synced += 1
        summary.rows += bool(change.rows)
        summary.fields += change.fields
        if change.move:
            summary.moves[change.move] += 1
        if change.changed:
            changed.append(change.order_id)
            if len(summary.examples) < examples:
                summary.examples.append(change.describe())
    return summary, changed
