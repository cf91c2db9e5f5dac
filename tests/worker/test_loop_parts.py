"""The worker's parts on their own: a shutdown ends a wait at once; chores hand back what they took over."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from django.db import DatabaseError

from crmbridge.bitrix.errors import BitrixError, ErrorKind
from crmbridge.redis_io import streams, telemetry
from crmbridge.redis_io.connection import reset_clients
from crmbridge.worker.chores import _survive_database_errors
from crmbridge.worker.heartbeat import Heartbeat
from crmbridge.worker.runner import Worker
from crmbridge.worker.stream_consumer import StreamConsumer, StreamMessage
from devtools.testing.ports import free_port
from tests.conftest import wait_for
from tests.worker.helpers import fast_config


@pytest.mark.django_db
def test_a_shutdown_ends_a_long_wait_at_once():
    worker = Worker(fast_config(), name="waiter")
    threading.Timer(0.2, lambda: setattr(worker, "shutdown", True)).start()
    started = time.monotonic()
    worker._sleep(30)
    assert time.monotonic() - started < 5


def held_by_a_gone_consumer(redis_client) -> None:
    """One operation (deal 1) read by a consumer that never beat and is gone."""
    dead = StreamConsumer(redis_client, name="gone", stream_names=streams.consumed_streams())
    dead.ensure_groups()
    redis_client.xadd(streams.operations_stream(), {"v": "1", "entity": "deal", "op": "create", "id": "1"})
    assert len(dead.read_new(count=10, block_ms=None)) == 1


@pytest.mark.django_db
def test_chores_return_the_messages_they_take_over_without_processing_them(redis_client):
    held_by_a_gone_consumer(redis_client)
    worker = Worker(fast_config(claim_idle_seconds=0.001), name="alive")
    time.sleep(0.01)

    claimed = worker.chores.run(paused=False)

    assert [m.fields["id"] for m in claimed] == ["1"]
    assert redis_client.xpending(streams.operations_stream(), streams.GROUP)["consumers"] == [
        {"name": "alive", "pending": 1}
    ]


@pytest.mark.django_db
def test_redis_down_backs_off_doubling_to_the_cap_and_logs_each_wait(settings, caplog):
    """Found by mutation testing (``_redis_down`` was reached only by the slow restart tests).

    Redis at a port where nothing listens; the worker is told to stop so that each backoff
    wait returns at once: only the waits it announces are checked, never the time taken.
    """
    port = free_port()
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    reset_clients()
    worker = Worker(fast_config(), name="cut-off")
    worker.shutdown = True

    with caplog.at_level(logging.WARNING, logger="crmbridge.worker"):
        assert all(worker.step() for _ in range(9))  # each step fails on Redis, waits, tries the groups

    lines = [r.getMessage() for r in caplog.records if "Redis connection error" in r.getMessage()]
    waits = [line.rsplit(" ", 1)[1] for line in lines]
    assert waits == ["0.5s", "1.0s", "2.0s", "4.0s", "8.0s", "16.0s", "30.0s", "30.0s", "30.0s"], lines
    assert all(line.startswith("[WORKER] Redis connection error (") for line in lines), lines
    assert all(f"127.0.0.1:{port}. Connection refused.)" in line for line in lines), lines  # the error itself


@pytest.mark.django_db
def test_claim_from_takes_the_idle_entries_even_behind_a_busy_one(redis_client):
    """``claim_from`` asks XPENDING for idle entries only: with ``count`` 1 and the oldest entry
    just touched by its owner, the idle one behind it is the one taken over."""
    owner = StreamConsumer(redis_client, name="owner", stream_names=[streams.operations_stream()])
    owner.ensure_groups()
    for local_id in ("1", "2"):
        redis_client.xadd(streams.operations_stream(), {"v": "1", "entity": "deal", "op": "create", "id": local_id})
    first, second = owner.read_new(count=10, block_ms=None)
    time.sleep(0.3)
    redis_client.xclaim(streams.operations_stream(), streams.GROUP, "owner", 0, [first.id])  # busy again

    taker = StreamConsumer(redis_client, name="taker", stream_names=[streams.operations_stream()])
    claimed = taker.claim_from(streams.operations_stream(), "owner", min_idle_ms=200, count=1)

    assert [m.id for m in claimed] == [second.id]


@pytest.mark.parametrize("count_delivery", [True, False])
def test_reclaimed_entries_stay_this_consumers(redis_client, count_delivery):
    """Found by mutation testing: a retry or a deferral claims the held entries again for this
    consumer, and returns them (a retry also counts the delivery)."""
    consumer = StreamConsumer(redis_client, name="holder", stream_names=[streams.operations_stream()])
    consumer.ensure_groups()
    for local_id in ("1", "2"):
        redis_client.xadd(streams.operations_stream(), {"v": "1", "entity": "deal", "op": "create", "id": local_id})
    held = consumer.read_new(count=10, block_ms=None)

    again = consumer.reclaim(held, count_delivery=count_delivery)

    assert [m.id for m in again] == [m.id for m in held]
    pending = redis_client.xpending_range(streams.operations_stream(), streams.GROUP, "-", "+", 10)
    assert [(p["consumer"], p["times_delivered"]) for p in pending] == [("holder", 2 if count_delivery else 1)] * 2


def hold(worker: Worker, *ids: str, delay: float = 3600) -> None:
    for message_id in ids:
        worker.schedule.hold(StreamMessage(streams.operations_stream(), message_id, {}), delay=delay, counted=False)


@pytest.mark.django_db
def test_a_worker_stopped_before_its_first_step_exits_0_and_says_it_started(redis_client, caplog):
    worker = Worker(fast_config(), name="short-lived")
    worker.shutdown = True
    with caplog.at_level(logging.INFO, logger="crmbridge.worker"):
        assert worker.run() == 0
    assert caplog.messages[0] == "Starting Bitrix worker background task... (consumer short-lived)"


@pytest.mark.django_db
def test_stopping_names_the_messages_left_pending(redis_client, caplog):
    worker = Worker(fast_config(), name="stopper")
    hold(worker, "1-0", "2-0")
    with caplog.at_level(logging.INFO, logger="crmbridge.worker"):
        worker._stop()
    assert caplog.messages == ["[WORKER] Stopping stopper: 2 message(s) left pending for other workers"]


@pytest.mark.django_db
def test_a_second_pause_says_still_paused_with_its_error_and_beats_what_is_held(redis_client, caplog):
    worker = Worker(fast_config(heartbeat_seconds=60), name="pauser")
    hold(worker, "1-0")
    worker._pause(BitrixError("expired_token", "first", kind=ErrorKind.CONFIG))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="crmbridge.worker"):
        worker._pause(BitrixError("NO_AUTH_FOUND", "second", kind=ErrorKind.CONFIG))
    assert caplog.messages == ["[WORKER] Still paused: NO_AUTH_FOUND: second"]
    beat = redis_client.hgetall(telemetry.worker_key("pauser"))
    assert (beat["state"], beat["pause_reason"], beat["current"]) == (
        "paused", "NO_AUTH_FOUND: second", "1 message(s) held for retry",
    )  # fmt: skip


@pytest.mark.django_db
def test_the_loop_counts_as_alive_for_a_whole_blocking_read_and_more(redis_client):
    """The limit is at least ``poll_interval`` + 10 s, whatever the other settings."""
    worker = Worker(fast_config(poll_interval=5, claim_idle_seconds=2, heartbeat_seconds=0.5), name="reader")
    worker._step_started = time.monotonic() - 10
    assert worker.loop_alive()
    worker._step_started = time.monotonic() - 20
    assert not worker.loop_alive()


@pytest.mark.django_db
def test_retries_that_fall_due_together_go_out_max_chunk_at_a_time(redis_client):
    worker = Worker(fast_config(max_chunk=2), name="retrier")
    worker.consumer.ensure_groups()
    hold(worker, "1-0", "2-0", "3-0", delay=0)
    assert worker.process_due()
    assert len(worker.schedule) == 1


@pytest.mark.django_db(transaction=True)
def test_a_read_waits_for_a_message_that_arrives_meanwhile(sandbox, redis_client):
    worker = Worker(fast_config(poll_interval=30), name="waiter")
    worker.consumer.ensure_groups()
    message = {"v": "1", "entity": "deal", "op": "create", "id": "1"}
    arrival = threading.Timer(0.3, redis_client.xadd, args=(streams.operations_stream(), message))
    arrival.start()
    try:
        assert worker.process_new()  # blocked until it came, not back empty at once
    finally:
        arrival.join()


def unread(redis_client) -> int:
    (group,) = [g for g in redis_client.xinfo_groups(streams.operations_stream()) if g["name"] == streams.GROUP]
    return group["lag"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("batch_size", [2, 3])
def test_a_backlog_is_read_up_to_max_chunk_and_no_further(sandbox, redis_client, batch_size):
    """A full first read is topped up to ``max_chunk`` (3); the rest stays unread."""
    worker = Worker(fast_config(batch_size=batch_size, max_chunk=3), name="reader")
    worker.consumer.ensure_groups()
    for local_id in range(1, 6):
        redis_client.xadd(streams.operations_stream(), {"v": "1", "entity": "deal", "op": "create", "id": local_id})
    assert worker.process_new()
    assert unread(redis_client) == 2


def test_a_blocking_read_returns_what_arrives_while_it_waits(redis_client):
    """Found by mutation testing: without ``BLOCK`` the read returns at once and the loop spins."""
    consumer = StreamConsumer(redis_client, name="reader", stream_names=[streams.operations_stream()])
    consumer.ensure_groups()
    fields = {"v": "1", "entity": "deal", "op": "create", "id": "7"}
    arrival = threading.Timer(0.3, redis_client.xadd, args=(streams.operations_stream(), fields))
    arrival.start()
    try:
        read = consumer.read_new(count=10, block_ms=20_000)
    finally:
        arrival.join()  # not into the next test's Redis

    assert [m.fields["id"] for m in read] == ["7"]


@pytest.mark.django_db
def test_a_takeover_with_room_for_one_message_takes_it(redis_client):
    """Found by mutation testing (``room > 1``): the last free place in the chunk is taken too."""
    held_by_a_gone_consumer(redis_client)
    worker = Worker(fast_config(claim_idle_seconds=0.001, max_chunk=1), name="alive")
    time.sleep(0.01)

    assert [m.fields["id"] for m in worker.chores.run(paused=False)] == ["1"]


def add_operations(redis_client, count: int) -> None:
    pipe = redis_client.pipeline(transaction=False)
    for local_id in range(count):
        pipe.xadd(streams.operations_stream(), {"v": "1", "entity": "deal", "op": "create", "id": str(local_id)})
    pipe.execute()


def consumer_named(redis_client, name: str) -> StreamConsumer:
    consumer = StreamConsumer(redis_client, name=name, stream_names=[streams.operations_stream()])
    consumer.ensure_groups()
    return consumer


def test_strays_are_this_consumers_own_unheld_entries(redis_client):
    """Found by mutation testing: another (live) consumer's idle entries are never taken as strays."""
    other, me = consumer_named(redis_client, "other"), consumer_named(redis_client, "me")
    add_operations(redis_client, 3)
    [others] = other.read_new(count=1, block_ms=None)
    held, stray = me.read_new(count=2, block_ms=None)

    found = me.strays({(held.stream, held.id)}, min_idle_ms=0, count=10)

    assert [m.id for m in found] == [stray.id]
    pending = redis_client.xpending_range(streams.operations_stream(), streams.GROUP, "-", "+", 10)
    assert [(p["message_id"], p["consumer"]) for p in pending] == [
        (others.id, "other"),
        (held.id, "me"),
        (stray.id, "me"),
    ]


def test_strays_behind_a_full_page_of_held_entries_are_found(redis_client):
    """Found by mutation testing: the pending list is read in pages of 500 (``PENDING_PAGE``)."""
    me = consumer_named(redis_client, "me")
    add_operations(redis_client, 501)
    *held, stray = me.read_new(count=501, block_ms=None)

    found = me.strays({(m.stream, m.id) for m in held}, min_idle_ms=0, count=10)

    assert [m.id for m in found] == [stray.id]


def test_read_own_pending_hands_back_count_entries_at_a_time(redis_client):
    """Found by mutation testing: ``count`` bounds each history read."""
    me = consumer_named(redis_client, "me")
    add_operations(redis_client, 3)
    first, second, third = me.read_new(count=3, block_ms=None)
    after: dict[str, str] = {}

    assert [m.id for m in me.read_own_pending(count=2, after=after)] == [first.id, second.id]
    assert [m.id for m in me.read_own_pending(count=2, after=after)] == [third.id]


def test_remove_idle_consumers_keeps_itself_live_ones_and_those_holding_entries(redis_client):
    """Found by mutation testing: only a consumer that is not live and holds nothing is deleted."""
    me = consumer_named(redis_client, "me")
    add_operations(redis_client, 1)
    consumer_named(redis_client, "holding").read_new(count=1, block_ms=None)
    for name in ("me", "gone", "live"):
        redis_client.xgroup_createconsumer(streams.operations_stream(), streams.GROUP, name)

    assert me.remove_idle_consumers(idle_ms=0, live_names={"live"}) == ["gone"]
    assert sorted(c["name"] for c in me.consumers(streams.operations_stream())) == ["holding", "live", "me"]


def test_the_heartbeat_thread_beats_on_its_own_while_the_loop_is_alive(redis_client):
    """A chunk may wait on Bitrix longer than the heartbeat's lifetime (3 intervals): the thread keeps it."""
    heartbeat = Heartbeat(client=redis_client, name="beater", config={}, interval=0.2)
    heartbeat.beat(force=True)
    first = redis_client.hget(telemetry.worker_key("beater"), "last_beat")
    heartbeat.start_thread(lambda: True)

    def beat_after_first() -> bool:
        return redis_client.hget(telemetry.worker_key("beater"), "last_beat") not in (None, first)

    try:
        wait_for(beat_after_first, what="a new beat")
    finally:
        heartbeat.remove()


def test_a_chore_that_fails_on_the_database_is_logged_by_its_name(caplog):
    """Found by mutation testing: the ERROR line names the chore (the relay, a reconciliation)."""

    def relay() -> None:
        raise DatabaseError("database is locked")

    with caplog.at_level(logging.ERROR, logger="crmbridge.worker"):
        assert _survive_database_errors("Outbox relay", relay) is None

    assert [m.splitlines()[0] for m in caplog.messages] == ["[WORKER] Outbox relay failed"]  # then the traceback
