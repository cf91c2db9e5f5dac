"""Batches: one request carries a new contact and its deal; two workers never duplicate."""

from __future__ import annotations

import signal

import pytest

from accounts.models import User
from crmbridge.publishing.publisher import queue_contact_update, queue_deal_update
from crmbridge.redis_io import telemetry
from orders.models import Order
from tests.conftest import wait_for
from tests.worker.helpers import run_worker_once, start_worker_process

pytestmark = pytest.mark.django_db(transaction=True)


def test_new_contact_and_its_deal_travel_in_one_request(sandbox, alice):
    orders = [Order.objects.create(owner=alice, service_id="sheet-metal", quantity=q) for q in (1, 2, 3)]

    run_worker_once()

    stats = sandbox.stats()
    # One request for the writes (the contact, its deals and their product rows), one before it
    # looking for an existing customer (issue 20), and the worker's checks at start: that the
    # webhook may look up contacts, and the portal's pipelines and stages (one batch).
    assert stats["by_method"] == {"batch": 3, "crm.duplicate.findbycomm": 1}, stats["by_method"]
    start_up = {"crm.duplicate.findbycomm", "crm.category.list", "crm.status.list"}
    writes = {k: v for k, v in stats["commands_by_method"].items() if k not in start_up}
    assert writes == {"crm.contact.add": 1, "crm.deal.add": 3, "crm.deal.productrows.set": 3}, writes
    contact_id = User.objects.get(pk=alice.pk).bitrix_contact_id
    deals = {d["ORIGIN_ID"]: d for d in sandbox.records("deal")}
    for order in orders:
        assert str(deals[f"order-{order.pk}"]["CONTACT_ID"]) == str(contact_id)


def test_large_backlog_fills_batches_of_fifty(sandbox, django_user_model):
    users = [
        django_user_model.objects.create_user(username=f"b{i}", email=f"b{i}@example.com", password="x-Pass-123")
        for i in range(60)
    ]
    for user in users:
        Order.objects.create(owner=user, service_id="welding", quantity=1)

    run_worker_once(batch_size=10)

    stats = sandbox.stats()
    # 180 commands (60 contacts, 60 deals, their 60 product rows) need at least 4 requests; allow a
    # little slack for chunk edges, plus the worker's start-up check of the portal (one batch).
    # Each chunk's new contacts are looked up first in one more request (issue 20): 1 e-mail lookup per chunk.
    commands = stats["commands_by_method"]
    lookups = commands["crm.duplicate.findbycomm"]
    assert (commands["crm.contact.add"], commands["crm.deal.add"], commands["crm.deal.productrows.set"]) == (60, 60, 60)
    assert stats["by_method"]["batch"] <= 6 + lookups, stats["by_method"]
    assert sandbox.stats()["deals"] == 60 and sandbox.stats()["contacts"] == 60


@pytest.mark.slow  # a separate process: run once, on SQLite (see test.sh)
def test_two_workers_holding_the_same_records_never_create_twice(sandbox, django_user_model, redis_client, tmp_path):
    sandbox.set_faults(latency_ms=30)
    workers = [start_worker_process("--batch-size", "3", log_path=tmp_path / f"w{i}.log") for i in range(2)]
    wait_for(lambda: len(telemetry.read_workers(redis_client)) == 2, what="two live workers")
    users = [
        django_user_model.objects.create_user(username=f"d{i}", email=f"d{i}@example.com", password="x-Pass-123")
        for i in range(15)
    ]
    orders = [Order.objects.create(owner=u, service_id="cnc-milling", quantity=1) for u in users for _ in range(2)]
    for _ in range(3):  # the same records again and again, read by both workers at once
        for order in orders:
            queue_deal_update(order.pk)
        for user in users:
            queue_contact_update(user.pk)
    try:
        ids = [o.pk for o in orders]
        wait_for(lambda: Order.objects.filter(pk__in=ids, bitrix_deal_id__isnull=False).count() == len(ids))
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            assert worker.wait(15) == 0
    stats = sandbox.stats()
    assert stats["deals"] == len(orders) and stats["contacts"] == len(users)
    assert not stats["duplicates"]["deal"] and not stats["duplicates"]["contact"]
    logs = "".join((tmp_path / f"w{i}.log").read_text() for i in range(2))
    assert logs.count("[WORKER] Processing") > 0
