"""The exact report ``bitrix_resync --orders --dry-run`` prints about deals already synced.

Pinned line by line (``crmbridge.publishing.deal_backfill``): the summary (deals, rows,
moves per pipeline pair, custom fields), one example per changed deal (ten at most) and
the plan. No portal needed: the report compares stored fingerprints and pipelines only.
"""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from crmbridge.bitrix.product_rows import fingerprint, rows_for
from orders.models import Order

pytestmark = pytest.mark.django_db(transaction=True, reset_sequences=True)


@pytest.fixture(autouse=True)
def deal_settings(settings):
    settings.BITRIX_ENABLED = False  # the orders are made as if synced long ago: nothing queued now
    settings.BITRIX_DEAL_CATEGORY_DEFAULT = 0
    settings.BITRIX_DEAL_CATEGORY_MAP = {}
    settings.BITRIX_DEAL_FIELDS = {}


def synced_order(owner, service_id: str, deal_id: int, *, rows_sent: bool, quantity: int = 1) -> Order:
    """An order with a deal in pipeline 0 (none stored), whose rows were sent or never were."""
    order = Order.objects.create(owner=owner, service_id=service_id, quantity=quantity, amount=Decimal("100.00"))
    stored = fingerprint(rows_for(order)) if rows_sent else ""
    Order.objects.filter(pk=order.pk).update(bitrix_deal_id=deal_id, bitrix_rows_hash=stored)
    return order


def dry_run() -> list[str]:
    out = StringIO()
    call_command("bitrix_resync", "--orders", "--dry-run", stdout=out, stderr=StringIO())
    return out.getvalue().splitlines()


def test_the_report_names_each_pipeline_move_and_the_deals_that_change(alice, settings):
    settings.BITRIX_DEAL_CATEGORY_MAP = {"cnc-milling": 3, "welding": 5}
    first = synced_order(alice, "cnc-milling", 501, rows_sent=True)
    rows_too = synced_order(alice, "cnc-milling", 502, rows_sent=False, quantity=3)
    welding = synced_order(alice, "welding", 503, rows_sent=True)
    synced_order(alice, "3d-printing", 504, rows_sent=True)  # up to date: counted, no example
    Order.objects.create(owner=alice, service_id="welding", quantity=1)  # no deal yet: not in the report
    assert first.pk == 1  # the first page of orders starts at the lowest key

    assert dry_run() == [
        "Deals already synced: 4; product rows to send: 1; "
        "to move to another pipeline: 3 (0 -> 3: 2, 0 -> 5: 1); custom fields to write: 0",
        "  order 1 (deal 501): pipeline 0 -> 3",
        f"  order {rows_too.pk} (deal 502): rows -> CNC milling x 3 at 33.333; pipeline 0 -> 3",
        f"  order {welding.pk} (deal 503): pipeline 0 -> 5",
        "orders (deals): 1 to create, 4 to update",
        "Dry run: 5 operation(s) would be queued; nothing was.",
    ]


def test_with_custom_fields_every_deal_changes_and_ten_are_shown(alice, settings):
    settings.BITRIX_DEAL_FIELDS = {"material": "UF_CRM_MATERIAL"}
    orders = [synced_order(alice, "cnc-milling", 700 + i, rows_sent=True) for i in range(11)]

    assert dry_run() == [
        "Deals already synced: 11; product rows to send: 0; to move to another pipeline: 0; custom fields to write: 11",
        *[f"  order {order.pk} (deal {700 + i}): custom fields" for i, order in enumerate(orders[:10])],
        "orders (deals): 0 to create, 11 to update",
        "Dry run: 11 operation(s) would be queued; nothing was.",
    ]
