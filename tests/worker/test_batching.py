"""Batches: one request carries a new contact and its deal; two workers never duplicate."""

from __future__ import annotations

import signal
import threading

import pytest
from django.contrib.auth.hashers import make_password

from accounts.models import User
from crmbridge.publishing.messages import Operation
from crmbridge.publishing.publisher import queue_contact_update, queue_deal_update
from crmbridge.redis_io import streams, telemetry
from crmbridge.redis_io.connection import get_redis
from crmbridge.worker.record_locks import lock_key
from crmbridge.worker.runner import Worker
from orders.models import Order
from tests.conftest import wait_for
from tests.worker.helpers import fast_config, run_worker_once, start_worker_process

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


def _new_customers(count: int) -> list[Order]:
    """``count`` users with an e-mail, a phone and one order each, all queued before the worker starts.

    Rows are bulk-inserted and their operations added to the stream in one pipeline (as
    bench/seed.py does): saved one by one, a save under load could go through the outbox
    and reach the stream after the worker's first read, in a chunk of its own.
    """
    password = make_password("x-Pass-123")  # hashed once: create_user would hash 500 times
    users = User.objects.bulk_create(
        [User(username=f"n{i}", email=f"n{i}@example.com", phone=f"+7 900 {i:07d}", password=password)
         for i in range(count)]
    )  # fmt: skip
    orders = Order.objects.bulk_create(
        [Order(owner=u, service_id="welding", quantity=1 + i % 3, amount=100 + i) for i, u in enumerate(users)]
    )
    pipe = get_redis().pipeline(transaction=False)
    for user, order in zip(users, orders, strict=True):
        pipe.xadd(streams.operations_stream(), Operation("contact", "create", user.pk).to_fields())
        pipe.xadd(streams.operations_stream(), Operation("deal", "create", order.pk).to_fields())
    pipe.execute()
    return orders


def test_a_backlog_of_500_new_customers_costs_one_lookup_request_and_thirty_full_ones(sandbox):
    """The chunk size that pays for the lookup (``WorkerConfig.max_chunk``, issue 20 item 9).

    500 new customers with an order are 1,000 messages, one chunk: their e-mails and phones are
    looked up in ONE request (25 + 25 findbycomm commands of 20 values), and their 1,500 writes
    go in 30 requests of exactly 50. With chunks of 100 messages it was 10 lookup requests.
    """
    _new_customers(500)

    run_worker_once(batch_size=10)

    stats = sandbox.stats()
    commands = stats["commands_by_method"]
    assert (commands["crm.contact.add"], commands["crm.deal.add"], commands["crm.deal.productrows.set"]) == (
        500, 500, 500,
    )  # fmt: skip
    # + 1 findbycomm: the start-up check that the webhook may look up contacts (outside batch).
    assert commands["crm.duplicate.findbycomm"] == 50 + 1, commands
    # 30 writes, 1 lookup, 1 start-up check of the pipelines and stages.
    assert stats["by_method"] == {"batch": 32, "crm.duplicate.findbycomm": 1}, stats["by_method"]
    assert stats["deals"] == 500 and not stats["duplicates"]["deal"] and not stats["duplicates"]["contact"]


def test_a_new_contacts_deal_is_packed_right_after_it(sandbox):
    """With 3 commands a request, each new contact (1) and its deal with rows (2) fill one request:
    2 write requests, not 3 (both contacts first, then a deal per request)."""
    _new_customers(2)

    run_worker_once(commands_per_request=3)

    stats = sandbox.stats()
    assert stats["commands_by_method"]["crm.deal.add"] == 2
    # 2 writes, 1 lookup of the new customers, 1 start-up check of the pipelines and stages.
    assert stats["by_method"] == {"batch": 4, "crm.duplicate.findbycomm": 1}, stats["by_method"]


def test_a_record_whose_lock_ran_out_during_the_chunk_waits_and_is_said_so(
    sandbox, alice, redis_client, monkeypatch, caplog
):
    """The lease ran out while the chunk looked its customers up: the record is not sent by this pass."""
    findbycomm = sandbox.portal.methods["crm.duplicate.findbycomm"]
    expired: list[bool] = []

    def lease_runs_out(params, caller):  # once, during the chunk's lookup (the lock is held then)
        if not expired and redis_client.delete(lock_key("contact", alice.pk)):
            expired.append(True)
        return findbycomm(params, caller)

    monkeypatch.setitem(sandbox.portal.methods, "crm.duplicate.findbycomm", lease_runs_out)
    queue_contact_update(alice.pk)

    run_worker_once()

    assert expired
    assert f"[WORKER] Lock on user {alice.pk} expired during the chunk; deferring it" in caplog.messages
    assert sandbox.stats()["contacts"] == 1 and User.objects.get(pk=alice.pk).bitrix_contact_id  # on a later pass


def test_a_shutdown_between_requests_leaves_the_rest_of_the_chunk_pending(sandbox, redis_client, caplog):
    """A chunk of 1,000 messages is 30-odd requests: SIGTERM must not wait for all of them.

    The worker stops after the request in flight; what it did not send stays in its
    pending list (no ack, no dead letter) and the next worker syncs it, without duplicates.
    """
    orders = _new_customers(60)  # 180 write commands: 4 requests
    sandbox.set_faults(latency_ms=300)  # every request takes a while: time to ask for the stop
    worker = Worker(fast_config(batch_size=10), once=True)

    def stop_after_the_lookup() -> None:  # start-up check (1 batch), the chunk's lookup (1 batch)
        wait_for(lambda: sandbox.stats()["by_method"].get("batch", 0) >= 2, timeout=30, interval=0.01)
        worker.shutdown = True

    watcher = threading.Thread(target=stop_after_the_lookup, daemon=True)
    watcher.start()
    worker.run()
    watcher.join(5)

    stats = sandbox.stats()
    assert stats["by_method"]["batch"] == 3, stats["by_method"]  # the first write request, no more
    sent = stats["contacts"]
    assert 0 < sent < 60 and stats["deals"] < 60
    pending = redis_client.xpending(streams.operations_stream(), streams.GROUP)["pending"]
    synced = Order.objects.filter(bitrix_deal_id__isnull=False).count()
    assert pending == 120 - sent - synced > 0  # acknowledged: exactly what the first request completed
    line = f"[WORKER] Stopping: {pending} record(s) of the chunk not sent; left pending for another worker"
    assert line in [r.getMessage() for r in caplog.records]  # one message per record here
    assert get_redis().xlen(streams.dead_letter_stream()) == 0

    sandbox.set_faults(latency_ms=0)
    run_worker_once()
    ids = [o.pk for o in orders]
    assert Order.objects.filter(pk__in=ids, bitrix_deal_id__isnull=False).count() == 60
    stats = sandbox.stats()
    assert stats["deals"] == 60 and stats["contacts"] == 60
    assert not stats["duplicates"]["deal"] and not stats["duplicates"]["contact"]


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
