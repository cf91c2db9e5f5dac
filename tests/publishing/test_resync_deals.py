"""``bitrix_resync`` brings deals already synced up to date: rows, pipeline, custom fields (issue 20 item 7).

Deals made before product rows and pipelines (no fingerprint, no pipeline stored) in the
sandbox; the resync's dry run says what would change, the real run and a worker change it.
"""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.product_rows import fingerprint, rows_for
from orders.models import Order
from tests.worker.helpers import run_worker_once

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sandbox_options() -> dict:
    return {"setup": {"categories": {"3": "Manufacturing"}}}


def resync(*args) -> str:
    out = StringIO()
    call_command("bitrix_resync", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_dry_run_prints_what_would_change_and_queues_nothing(sandbox, alice, settings, redis_client):
    orders = [
        Order.objects.create(owner=alice, service_id=service, quantity=3, amount=Decimal("100.00"))
        for service in ("cnc-milling", "welding")
    ]
    run_worker_once()
    Order.objects.update(bitrix_rows_hash="", bitrix_category_id=None)  # as synced before issue 20
    settings.BITRIX_DEAL_CATEGORY_MAP = {"cnc-milling": 3}
    queued_before = redis_client.xlen("bitrix:operations")

    out = resync("--orders", "--dry-run")

    assert "Deals already synced: 2; product rows to send: 2; to move to another pipeline: 1 (0 -> 3: 1)" in out
    assert f"order {orders[0].pk} (deal " in out and "rows -> CNC milling x 3 at 33.333; pipeline 0 -> 3" in out
    assert "Dry run: 2 operation(s) would be queued" in out
    assert redis_client.xlen("bitrix:operations") == queued_before


def test_outdated_resync_brings_rows_and_pipeline_up_to_date(sandbox, alice, settings):
    orders = [
        Order.objects.create(owner=alice, service_id=service, quantity=2, amount=Decimal("30.00"))
        for service in ("cnc-milling", "welding", "3d-printing")
    ]
    run_worker_once()
    # As synced before issue 20: the portal's deals have no rows, nothing is stored locally.
    Order.objects.filter(pk__in=[o.pk for o in orders[:2]]).update(bitrix_rows_hash="", bitrix_category_id=None)
    settings.BITRIX_DEAL_CATEGORY_MAP = {"cnc-milling": 3}
    updates_before = sandbox.stats()["commands_by_method"].get("crm.deal.update", 0)

    out = resync("--orders", "--outdated", "--dry-run")
    assert "orders (deals): 0 to create, 2 to update" in out  # the third is up to date
    resync("--orders", "--outdated")
    run_worker_once()

    deals = {int(d["ID"]): d for d in sandbox.records("deal")}
    for order in orders:
        order.refresh_from_db()
    assert deals[orders[0].bitrix_deal_id]["CATEGORY_ID"] == "3" and orders[0].bitrix_category_id == 3
    assert deals[orders[0].bitrix_deal_id]["STAGE_ID"] == "C3:NEW"
    assert orders[1].bitrix_rows_hash == fingerprint(rows_for(orders[1]))
    rows = BitrixClient(sandbox.webhook_url).call("crm.deal.productrows.get", {"id": orders[1].bitrix_deal_id})
    assert [(r["PRODUCT_NAME"], r["QUANTITY"]) for r in rows] == [("Welding", 2.0)]
    assert sandbox.stats()["commands_by_method"]["crm.deal.update"] - updates_before == 2
    assert "to move to another pipeline: 0" in resync("--orders", "--dry-run")
