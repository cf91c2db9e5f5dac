"""Issue 13, item 4: Redis loses its data with operations queued; nothing is lost, nothing doubled."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from crmbridge.bitrix.client import BitrixClient
from crmbridge.diagnostics.doctor import FAIL, OK, DoctorOptions, run_doctor
from crmbridge.models import OutboxEntry, SyncRecord
from crmbridge.redis_io import streams, telemetry
from crmbridge.redis_io.connection import get_redis
from crmbridge.worker import write_back
from crmbridge.worker.dead_letters import DeadLetter, move_to_dead_letters
from crmbridge.worker.runner import Worker
from orders.models import Order
from tests.worker.helpers import fast_config

pytestmark = pytest.mark.django_db(transaction=True)

AFTER, INTERVAL = 2.0, 0.5


@pytest.fixture
def reconcile_fast(settings):
    settings.BITRIX_RECONCILE_AFTER = AFTER
    settings.BITRIX_RECONCILE_INTERVAL = INTERVAL


def doctor_finding(check: str):
    findings = run_doctor(get_redis(), DoctorOptions(check_bitrix=False))
    return next(f for f in findings if f.check == check)


def test_flushed_redis_with_20_operations_queued_syncs_each_record_once(sandbox, alice, redis_client, reconcile_fast):
    orders = [Order.objects.create(owner=alice, service_id="welding", quantity=i + 1) for i in range(20)]
    # Three creates had reached Bitrix when Redis went (the worker died before writing the IDs back).
    client = BitrixClient(settings.BITRIX_WEBHOOK_URL)
    for order in orders[:3]:
        origin = {"ORIGINATOR_ID": settings.BITRIX_ORIGINATOR_ID, "ORIGIN_ID": f"order-{order.pk}"}
        client.add("deal", {"TITLE": "x", **origin})
    write_back.mark_create_started([("deal", o.pk) for o in orders[:3]])

    redis_client.flushall()  # our private server: Redis restarted without persistence
    flushed = time.monotonic()
    worker = Worker(fast_config())
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        ids = [o.pk for o in orders]
        while Order.objects.filter(pk__in=ids, bitrix_deal_id__isnull=True).exists():
            assert time.monotonic() - flushed < AFTER + INTERVAL + 8, "not reconciled in time"
            time.sleep(0.1)
    finally:
        worker.shutdown = True
        thread.join(10)

    deals = [d for d in sandbox.records("deal") if d["ORIGIN_ID"].startswith("order-")]
    assert sorted(d["ORIGIN_ID"] for d in deals) == sorted(f"order-{o.pk}" for o in orders)  # each exactly once
    assert len([c for c in sandbox.records("contact") if c["ORIGIN_ID"] == f"user-{alice.pk}"]) == 1
    assert not SyncRecord.objects.filter(state=SyncRecord.State.WAITING).exists()
    reconciled = sum(v for row in telemetry.read_minutes(redis_client, 5) for k, v in row["by_kind"].items()
                     if k.startswith("reconciled:"))  # fmt: skip
    assert reconciled >= 21  # 20 orders and the user


def test_doctor_fails_on_lost_records_and_names_the_fix(alice, redis_client, reconcile_fast):
    assert doctor_finding("sync.lost_records").status == OK
    Order.objects.create(owner=alice, service_id="welding", quantity=1)
    SyncRecord.objects.update(last_queued_at=timezone.now() - timedelta(seconds=AFTER + 1))
    assert doctor_finding("sync.lost_records").status == OK  # its message is still in the stream

    redis_client.flushall()

    finding = doctor_finding("sync.lost_records")
    # The user's row left the outbox; the order's row (its delete deferred) lost its "sent" marker,
    # so the relay will send it again: only the user is lost.
    assert finding.status == FAIL and "1 record(s)" in finding.summary and f"contact {alice.pk}" in finding.summary
    assert "BITRIX_RECONCILE_INTERVAL" in finding.fix and "bitrix_resync" in finding.fix


def test_records_with_a_live_or_dead_message_are_not_queued_again(sandbox, alice, redis_client, reconcile_fast):
    from crmbridge.worker.reconcile import lost_records

    Order.objects.create(owner=alice, service_id="welding", quantity=1)
    SyncRecord.objects.update(last_queued_at=timezone.now() - timedelta(seconds=AFTER + 1))
    assert lost_records(redis_client) == []  # undelivered in the stream
    Worker(fast_config(), name="worker_holder-1").consumer.ensure_groups()
    [(_, entries)] = redis_client.xreadgroup(streams.GROUP, "worker_holder-1", {streams.operations_stream(): ">"})
    assert lost_records(redis_client) == []  # pending: a worker holds them
    ids = [entry_id for entry_id, _ in entries]
    move_to_dead_letters(redis_client, [DeadLetter(streams.operations_stream(), i, f, "manual") for i, f in entries])
    assert lost_records(redis_client) == []  # dead letters: an operator decides
    redis_client.delete(streams.dead_letter_stream())
    assert {key[0] for key in lost_records(redis_client)} == {"deal", "contact"} and ids


def test_a_lost_record_linked_to_bitrix_is_queued_as_an_update_and_an_unlinked_one_as_a_create(
    alice, redis_client, reconcile_fast
):
    """Found by mutation testing: the operation requeued follows the record's link to Bitrix."""
    from crmbridge.worker.reconcile import reconcile

    linked, unlinked = (Order.objects.create(owner=alice, service_id="welding", quantity=1) for _ in range(2))
    Order.objects.filter(pk=linked.pk).update(bitrix_deal_id=4242)
    SyncRecord.objects.update(last_queued_at=timezone.now() - timedelta(seconds=AFTER + 1))
    OutboxEntry.objects.all().delete()
    redis_client.flushall()  # our private server: the messages are lost

    assert reconcile(redis_client) == 3

    queued = {(f["entity"], int(f["id"])): f["op"] for _, f in redis_client.xrange(streams.operations_stream())}
    assert queued == {("deal", linked.pk): "update", ("deal", unlinked.pk): "create", ("contact", alice.pk): "create"}


def lose_the_messages_of_one_order(alice, redis_client) -> None:
    Order.objects.create(owner=alice, service_id="welding", quantity=1)
    SyncRecord.objects.update(last_queued_at=timezone.now() - timedelta(seconds=AFTER + 1))
    OutboxEntry.objects.all().delete()
    redis_client.delete(streams.operations_stream())


def test_a_message_held_behind_a_thousand_pending_entries_is_live(alice, redis_client, reconcile_fast):
    """Found by mutation testing: the pending list is read in pages of 1,000 (``_pending_ids``)."""
    from crmbridge.worker.reconcile import lost_records

    stream = streams.operations_stream()
    pipe = redis_client.pipeline(transaction=False)
    for n in range(1000):
        pipe.xadd(stream, {"n": str(n)})
    pipe.execute()
    Order.objects.create(owner=alice, service_id="welding", quantity=1)  # its two messages come last
    SyncRecord.objects.update(last_queued_at=timezone.now() - timedelta(seconds=AFTER + 1))
    redis_client.xgroup_create(stream, streams.GROUP, id="0")
    [(_, entries)] = redis_client.xreadgroup(streams.GROUP, "worker_holder-1", {stream: ">"})
    assert len(entries) == 1002

    assert lost_records(redis_client) == []


def test_lost_records_reads_each_entry_once(alice, redis_client, reconcile_fast):
    """Found by mutation testing: a stream is read in pages of 1,000, each from where the last one
    ended: 2,500 dead letters take 3 XRANGE calls (the operations stream is gone here)."""
    from crmbridge.worker.reconcile import lost_records

    pipe = redis_client.pipeline(transaction=False)
    for n in range(2500):
        letter = DeadLetter(
            streams.operations_stream(),
            f"1-{n}",
            {"v": "1", "entity": "deal", "op": "create", "id": str(10_000 + n)},
            "manual",
        )
        pipe.xadd(streams.dead_letter_stream(), letter.to_fields())
    pipe.execute()
    lose_the_messages_of_one_order(alice, redis_client)
    redis_client.config_resetstat()

    assert {key[0] for key in lost_records(redis_client)} == {"deal", "contact"}

    assert redis_client.info("commandstats")["cmdstat_xrange"]["calls"] == 3


def test_one_worker_at_a_time_reconciles_for_most_of_the_interval(alice, redis_client, settings):
    """Found by mutation testing: the first worker's lock lasts 90% of ``BITRIX_RECONCILE_INTERVAL``."""
    from crmbridge.worker.reconcile import lost_records

    settings.BITRIX_RECONCILE_AFTER, settings.BITRIX_RECONCILE_INTERVAL = AFTER, 60
    assert Worker(fast_config(), name="first").chores.reconcile() == 0  # nothing lost: it holds the lock all the same
    lose_the_messages_of_one_order(alice, redis_client)

    assert Worker(fast_config(), name="second").chores.reconcile() == 0
    assert len(lost_records(redis_client)) == 2
    assert 30_000 < redis_client.pttl(streams.key("reconcile:lock")) <= 54_000
