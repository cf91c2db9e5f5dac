"""Issue 13, item 7: while a record has an unacknowledged message, a change adds no entry; none is lost."""

from __future__ import annotations

import threading
import time

import pytest

from crmbridge.redis_io import streams
from crmbridge.worker.runner import Worker
from orders.models import Order
from tests.conftest import wait_for
from tests.worker.helpers import fast_config, run_worker_once

pytestmark = pytest.mark.django_db(transaction=True)


def entries(redis_client) -> int:
    return redis_client.xlen(streams.operations_stream())


def title(sandbox, deal_id: int) -> str:
    return next(d["TITLE"] for d in sandbox.records("deal") if int(d["ID"]) == deal_id)


def deal_updates(sandbox) -> int:
    return sandbox.stats()["commands_by_method"].get("crm.deal.update", 0)


@pytest.fixture
def linked(sandbox, alice):
    order = Order.objects.create(owner=alice, service_id="welding", quantity=1)
    assert run_worker_once() == 0
    order.refresh_from_db()
    return order


def edit(order: Order, quantity: int) -> None:
    order.quantity = quantity
    order.save()


def test_changes_while_a_message_waits_add_no_entry(sandbox, linked, redis_client):
    before = entries(redis_client)
    for quantity in range(2, 12):
        edit(linked, quantity)

    assert entries(redis_client) == before + 1  # ten changes, one entry
    assert run_worker_once() == 0
    assert title(sandbox, linked.bitrix_deal_id).endswith(" x 11")
    assert redis_client.xpending(streams.operations_stream(), streams.GROUP)["pending"] == 0


def test_a_change_skipped_while_its_message_is_in_flight_is_still_synced(sandbox, linked, redis_client):
    edit(linked, 2)
    sandbox.set_faults(latency_ms=1500)  # the update is in flight a while, the record already loaded
    worker = Worker(fast_config(record_interval_seconds=0.2))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        time.sleep(0.6)
        before = entries(redis_client)
        edit(linked, 3)  # committed after the worker loaded quantity 2; its message is pending
        assert entries(redis_client) == before  # coalesced into the message in flight
        sandbox.portal.faults.reset()
        wait_for(lambda: title(sandbox, linked.bitrix_deal_id).endswith(" x 3"), 10, "the skipped change in Bitrix")
        wait_for(lambda: len(worker.schedule) == 0, 10, "nothing held")
    finally:
        worker.shutdown = True
        thread.join(10)
    assert redis_client.xpending(streams.operations_stream(), streams.GROUP)["pending"] == 0


def test_a_burst_of_edits_costs_about_one_update_per_record_interval(sandbox, linked, redis_client):
    worker = Worker(fast_config(record_interval_seconds=1.0))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    before_updates, before_entries = deal_updates(sandbox), entries(redis_client)
    try:
        for quantity in range(2, 62):  # 60 edits at 20 per second
            edit(linked, quantity)
            time.sleep(0.05)
        wait_for(lambda: title(sandbox, linked.bitrix_deal_id).endswith(" x 61"), 10, "the last edit in Bitrix")
    finally:
        worker.shutdown = True
        thread.join(10)
    assert deal_updates(sandbox) - before_updates <= 6
    assert entries(redis_client) - before_entries <= 8
