"""Redis down, slow or racing: every committed operation reaches the stream exactly once.

Also pinned: the outbox's bounds (500 rows per relay call, deletes deferred up to 1000 rows,
errors kept to 2000 characters, claims only with a lease, the statements per batch) and the
relay's INFO/WARNING lines, whole.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from crmbridge.models import OutboxEntry, SyncRecord
from crmbridge.publishing import outbox_sql
from crmbridge.publishing.coalescing import last_key
from crmbridge.publishing.messages import Operation
from crmbridge.publishing.outbox import (
    PUBLISH_SCRIPT,
    _run_script,
    already_sent,
    claim,
    delete_sent_rows,
    describe_error,
    publish_entries,
    relay_outbox,
    release,
    sent_marker_key,
    waiting_entries,
    write_entries,
)
from crmbridge.publishing.publisher import publish_client
from tests.publishing.helpers import make_order, messages, published, unsent

pytestmark = pytest.mark.django_db(transaction=True)


def create_orders(client, n: int) -> list[float]:
    """POST n orders through the API; return each request's duration."""
    durations = []
    for i in range(n):
        started = time.monotonic()
        response = client.post("/orders", {"service_id": "cnc-milling", "quantity": i + 1}, format="json")
        durations.append(time.monotonic() - started)
        assert response.status_code == 201, response.content
    return durations


def write(n: int, *, entity: str = "deal", op: str = "create") -> list[OutboxEntry]:
    with transaction.atomic():
        return write_entries([Operation(entity=entity, op=op, local_id=i + 1) for i in range(n)])


def written(queries: CaptureQueriesContext) -> list[str]:
    """The statements that wrote outbox rows and sync records."""
    return [q["sql"] for q in queries.captured_queries if q["sql"].startswith(("INSERT", "DELETE", "WITH"))]


@pytest.fixture
def blackhole():
    """A port that accepts TCP connections and never answers: a hung Redis."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    server.close()


def test_orders_created_while_redis_is_down_reach_the_stream_once_it_is_back(
    alice_client, alice, private_redis, redis_client, caplog
):
    private_redis.stop()
    durations = create_orders(alice_client, 20)

    assert sum(durations) < 5 and max(durations) < 1.5  # the API answers; no request waits on Redis
    assert OutboxEntry.objects.count() == waiting_entries().count() == 20
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "publishing after commit paused" in warnings[0]  # once, not per request
    assert len(messages(caplog, "[QUEUE_DEAL] Redis unavailable; deal creation for order")) == 20
    assert "kept in outbox (entry " in messages(caplog, "[QUEUE_DEAL]")[0]

    private_redis.start()
    assert relay_outbox() == 20
    order_ids = sorted(e[2] for e in published(redis_client))
    assert published(redis_client) == [("deal", "create", pk, "signal") for pk in order_ids]
    assert len(set(order_ids)) == 20
    assert len(messages(caplog, "[QUEUE] Published create operation for deal")) == 20
    assert messages(caplog, "[QUEUE] Relayed") == ["[QUEUE] Relayed 20 operations from the outbox"]
    assert not OutboxEntry.objects.exists()
    assert relay_outbox() == 0
    assert len(published(redis_client)) == 20


def test_a_hung_redis_costs_one_timeout_then_the_breaker_skips_it(alice_client, alice, settings, blackhole, caplog):
    settings.REDIS_URL = blackhole
    settings.REDIS_PUBLISH_TIMEOUT = 0.8
    started = time.monotonic()
    durations = create_orders(alice_client, 10)
    elapsed = time.monotonic() - started

    assert durations[0] >= 0.8  # the one request that tried waited the publish timeout, no more
    assert elapsed < 0.8 + 2 and max(durations[1:]) < 0.5  # the others skipped Redis
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 1
    entries = list(OutboxEntry.objects.order_by("id"))
    assert len(entries) == 10
    assert entries[0].attempts == 1 and "Timeout" in entries[0].last_error
    assert all(e.claimed_until is None for e in entries)  # all left to the relay


def test_the_breaker_closes_once_redis_answers_again(
    alice_client, alice, private_redis, redis_client, settings, caplog
):
    settings.BITRIX_PUBLISH_BREAKER_SECONDS = 0.2
    private_redis.stop()
    create_orders(alice_client, 2)
    private_redis.start()
    time.sleep(0.25)
    create_orders(alice_client, 2)

    assert messages(caplog, "[QUEUE] Redis reachable again") == [
        "[QUEUE] Redis reachable again; publishing after commit resumed"
    ]
    assert len(published(redis_client)) == 2  # the two made after the cool-down, at once
    assert len(unsent(redis_client)) == 2
    assert relay_outbox() == 2
    assert len(published(redis_client)) == 4


def test_publishing_one_entry_twice_adds_it_once(redis_client):
    (entry,) = write(1)
    first = publish_entries(publish_client(), [entry])
    second = publish_entries(publish_client(), [entry])  # e.g. on-commit hook and relay

    assert [s.added for s in first.sent + second.sent] == [True, False]
    assert first.sent[0].message_id == second.sent[0].message_id
    assert published(redis_client) == [("deal", "create", 1, "signal")]
    assert redis_client.ttl(sent_marker_key(entry)) > 86000
    assert not OutboxEntry.objects.exists()


def test_a_publisher_that_died_after_xadd_is_not_repeated_by_the_relay(redis_client, caplog):
    entries = write(3)
    script = redis_client.register_script(PUBLISH_SCRIPT)
    for entry in entries[:2]:  # XADD done, then the process died before deleting the rows
        _run_script(script, entry, redis_client)

    assert relay_outbox() == 3
    assert published(redis_client) == [("deal", "create", i, "signal") for i in (1, 2, 3)]
    assert len(messages(caplog, "[QUEUE] Published")) == 1  # only the one really added now
    assert not OutboxEntry.objects.exists()


def test_relays_and_a_direct_publisher_racing_on_the_same_rows_publish_each_once(redis_client):
    entries = write(60)
    barrier = threading.Barrier(4)

    def run(work):
        try:
            barrier.wait()
            work()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(lambda: relay_outbox(limit=25),)) for _ in range(3)]
    threads.append(threading.Thread(target=run, args=(lambda: publish_entries(publish_client(), entries),)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    relay_outbox()  # whatever the racing relays' limits left

    ids = [e[2] for e in published(redis_client)]
    assert sorted(ids) == list(range(1, 61))
    assert not OutboxEntry.objects.exists()


def test_a_claimed_row_is_not_claimed_again_until_its_lease_ends():
    entries = write(3)
    ids = [e.pk for e in entries]
    now = timezone.now()

    assert [e.pk for e in claim(ids, now=now, lease_seconds=60)] == ids
    assert claim(ids, now=now, lease_seconds=60) == []
    assert [e.pk for e in claim(ids, now=now + timedelta(seconds=61), lease_seconds=60)] == ids


def test_the_relay_publishes_oldest_first_and_leaves_rows_claimed_by_a_live_publisher(redis_client):
    with transaction.atomic():
        write_entries([Operation("contact", "create", 5), Operation("deal", "update", 3)])
        write_entries([Operation("deal", "create", 4)], claimed_by="publisher:test", lease_seconds=30)

    assert relay_outbox() == 2
    assert published(redis_client) == [("contact", "create", 5, "signal"), ("deal", "update", 3, "signal")]
    assert OutboxEntry.objects.get().claimed_by == "publisher:test"


def test_the_relay_on_an_empty_outbox_is_one_query(django_assert_num_queries):
    with django_assert_num_queries(1):
        assert relay_outbox() == 0


def test_the_relay_with_redis_down_keeps_the_rows_and_says_why(private_redis, caplog):
    write(2)
    private_redis.stop()

    assert relay_outbox() == 0
    rows = list(OutboxEntry.objects.all())
    assert [(r.attempts, r.claimed_until) for r in rows] == [(1, None), (1, None)]
    assert rows[0].last_error.startswith("ConnectionError: ")
    assert messages(caplog, "[QUEUE] Relay") == [
        f"[QUEUE] Relay could not publish 2 outbox entries: {rows[0].last_error}"
    ]


def test_the_relay_command_drains_the_outbox(redis_client):
    write(3)
    out = StringIO()
    call_command("bitrix_relay_outbox", "--limit", "2", stdout=out)

    assert out.getvalue().strip() == "Relayed 3 operation(s); 0 left in the outbox."
    assert len(published(redis_client)) == 3


def test_the_relay_command_loops_until_sigterm(redis_client):
    def write_from_another_process():
        try:
            write(2)
        finally:
            connection.close()

    threading.Timer(0.5, write_from_another_process).start()
    threading.Timer(1.0, os.kill, args=(os.getpid(), signal.SIGTERM)).start()
    out = StringIO()
    call_command("bitrix_relay_outbox", "--loop", "--interval", "0.1", stdout=out)

    assert out.getvalue().strip() == "Relayed 2 operation(s); 0 left in the outbox."
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_a_published_row_is_deleted_by_the_next_write_or_by_the_relay(alice, redis_client):
    first = make_order(alice)
    first_row = OutboxEntry.objects.get()  # alice's row went with this write; this one is sent, delete deferred
    assert first_row.fields["id"] == str(first.pk)

    second = make_order(alice)
    assert [row.fields["id"] for row in OutboxEntry.objects.all()] == [str(second.pk)]
    assert not waiting_entries().exists()  # sent: not part of the backlog an operator sees

    # The process goes idle: once the claim runs out the relay removes the row without adding it again.
    OutboxEntry.objects.update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert relay_outbox() == 1
    assert published(redis_client)[1:] == [
        ("deal", "create", first.pk, "signal"),
        ("deal", "create", second.pk, "signal"),
    ]
    assert not OutboxEntry.objects.exists()


def test_a_deferred_delete_never_takes_a_row_it_did_not_send(redis_client):
    (entry,) = write(1)
    publish_entries(publish_client(), [entry], defer_delete=True)
    OutboxEntry.objects.filter(pk=entry.pk).update(dedup_key=uuid.uuid4())  # the ID now names another row

    assert delete_sent_rows() == 1
    assert OutboxEntry.objects.filter(pk=entry.pk).exists()


def test_a_queued_operation_costs_one_round_trip_on_postgresql_three_statements_on_sqlite(redis_client):
    (sent,) = write(1)
    publish_entries(publish_client(), [sent], defer_delete=True)  # its delete now rides on the next write

    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        (entry,) = write_entries([Operation("deal", "update", 1)])

    assert len(written(queries)) == (1 if connection.vendor == "postgresql" else 3)
    assert list(OutboxEntry.objects.values_list("pk", flat=True)) == [entry.pk]
    assert SyncRecord.objects.get(entity="deal", local_id=1).state == SyncRecord.State.WAITING


def test_entries_redis_refuses_one_by_one_keep_their_rows_for_the_relay(redis_client, caplog):
    """A refusal inside a pipeline (connection alive) costs that entry only: its row stays, the others go."""
    write(3)
    # The record's "last message" key of the wrong type: the script's GET of it fails for that entry alone.
    redis_client.hset(last_key("deal", 2), "not", "a string")

    assert relay_outbox() == 2
    assert published(redis_client) == [("deal", "create", 1, "signal"), ("deal", "create", 3, "signal")]
    (kept,) = OutboxEntry.objects.all()
    assert (kept.fields["id"], kept.attempts, kept.claimed_until, kept.claimed_by) == ("2", 1, None, "")
    assert "WRONGTYPE" in kept.last_error
    assert messages(caplog, "[QUEUE] Redis refused") == [
        f"[QUEUE] Redis refused outbox entry {kept.pk} ({kept.last_error}); kept for the relay"
    ]

    redis_client.delete(last_key("deal", 2))
    assert relay_outbox() == 1
    assert [e[2] for e in published(redis_client)] == [1, 3, 2]
    assert not OutboxEntry.objects.exists()


def test_already_sent_tells_rows_in_redis_from_the_backlog(redis_client):
    entries = write(2)
    publish_entries(publish_client(), entries[:1], defer_delete=True)  # in Redis, its row waits for the delete

    assert already_sent(redis_client, entries) == [True, False]
    assert already_sent(redis_client, []) == []


def test_the_relay_sends_at_most_500_rows_a_call_oldest_first(redis_client):
    write(501)

    assert relay_outbox() == 500
    assert [row.fields["id"] for row in OutboxEntry.objects.all()] == ["501"]


def test_a_relay_whose_rows_another_relay_claimed_meanwhile_sends_nothing(redis_client):
    write(2)
    claims = []

    def other_relay_claims_first(execute, sql, params, many, context):
        if sql.startswith("UPDATE") and not claims:  # this relay's claim: another relay gets there first
            claims.append(sql)
            OutboxEntry.objects.update(claimed_until=timezone.now() + timedelta(seconds=60), claimed_by="relay:other")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(other_relay_claims_first):
        assert relay_outbox() == 0
    assert published(redis_client) == []
    assert list(OutboxEntry.objects.values_list("claimed_by", flat=True)) == ["relay:other", "relay:other"]


def test_an_error_is_kept_to_2000_characters():
    (entry,) = write(1)
    release([entry.pk], "y" * 3000)
    entry.refresh_from_db()

    assert (entry.attempts, entry.last_error) == (1, "y" * 2000)
    assert describe_error(RuntimeError("x" * 3000)) == "RuntimeError: " + "x" * (2000 - len("RuntimeError: "))


def test_the_thousandth_deferred_delete_deletes_them_all_at_once(redis_client):
    entries = write(1000)
    publish_entries(publish_client(), entries[:999], defer_delete=True)
    assert OutboxEntry.objects.count() == 1000  # sent; their deletes wait for this process's next write

    publish_entries(publish_client(), entries[999:], defer_delete=True)
    assert not OutboxEntry.objects.exists()


def test_new_rows_are_claimed_only_with_a_lease():
    now = timezone.now()
    with transaction.atomic():
        (free,) = write_entries([Operation("deal", "create", 1)], claimed_by="publisher:p")  # lease 0: breaker open
        (held,) = write_entries([Operation("deal", "create", 2)], claimed_by="publisher:p", lease_seconds=0.5)

    assert [entry._state.adding for entry in (free, held)] == [False, False]  # saved rows, as create() returns
    free, held = OutboxEntry.objects.get(pk=free.pk), OutboxEntry.objects.get(pk=held.pk)
    assert (free.claimed_by, free.claimed_until) == ("", None)
    assert held.claimed_by == "publisher:p"
    assert timedelta(seconds=0.4) < held.claimed_until - now < timedelta(seconds=1)


def test_a_full_batch_of_operations_costs_one_statement_on_postgresql_two_on_sqlite():
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        entries = write_entries([Operation("deal", "create", i + 1) for i in range(outbox_sql.BATCH)])

    assert len(written(queries)) == (1 if connection.vendor == "postgresql" else 2)  # insert, upsert
    assert SyncRecord.objects.count() == outbox_sql.BATCH
    assert set(SyncRecord.objects.values_list("state", "last_queued_at")) == {
        (SyncRecord.State.WAITING, entries[0].created_at)
    }


def test_writing_no_operations_writes_nothing():
    with transaction.atomic():
        assert write_entries([]) == []
    assert not OutboxEntry.objects.exists() and not SyncRecord.objects.exists()
