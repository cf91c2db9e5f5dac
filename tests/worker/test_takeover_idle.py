"""Takeover in-process (found by mutation testing: ``Chores._claim`` was reached only by slow tests).

Pinned: an entry of a stopped consumer (its heartbeat gone) moves once it is idle
``heartbeat_seconds``, one of a consumer that never beat after ``claim_idle_seconds``
(both bounds to within 0.1%); a live consumer's entry never moves; each
takeover logs its WARNING line with the count, the bound and the consumer's name,
and an empty takeover logs nothing. Idle times are set with XCLAIM's IDLE option.
"""

from __future__ import annotations

import logging

import pytest

from crmbridge.redis_io import streams, telemetry
from crmbridge.worker.runner import Worker
from crmbridge.worker.stream_consumer import StreamConsumer
from tests.worker.helpers import fast_config

pytestmark = pytest.mark.django_db

HEARTBEAT = 1000.0  # seconds: the entries' idle times below are set, never waited for
CLAIM_IDLE = 3000.0


def hold_entries(redis_client, consumer: str, idle_ms: list[int]) -> list[str]:
    """``consumer`` reads one operation per idle time; each entry is then that idle."""
    holder = StreamConsumer(redis_client, name=consumer, stream_names=[streams.operations_stream()])
    holder.ensure_groups()
    for n in range(len(idle_ms)):
        redis_client.xadd(streams.operations_stream(), {"v": "1", "entity": "deal", "op": "create", "id": str(n)})
    ids = [m.id for m in holder.read_new(count=len(idle_ms), block_ms=None)]
    for entry_id, idle in zip(ids, idle_ms, strict=True):
        redis_client.xclaim(streams.operations_stream(), streams.GROUP, consumer, 0, [entry_id], idle=idle)
    return ids


def stopped(redis_client, consumer: str) -> None:
    telemetry.write_heartbeat(redis_client, consumer, {"name": consumer}, ttl_seconds=60)
    telemetry.remove_heartbeat(redis_client, consumer)


def take_over(caplog) -> tuple[list[str], list[str]]:
    worker = Worker(fast_config(heartbeat_seconds=HEARTBEAT, claim_idle_seconds=CLAIM_IDLE), name="taker")
    with caplog.at_level(logging.WARNING, logger="crmbridge.worker"):
        claimed = worker.chores.take_over()
    return [m.id for m in claimed], [r.getMessage() for r in caplog.records if "Took over" in r.getMessage()]


def test_a_stopped_consumers_entries_move_once_idle_for_one_heartbeat(redis_client, caplog):
    stopped(redis_client, "gone-1")
    ids = hold_entries(redis_client, "gone-1", [1_000_300, 1_000_300, 990_000])

    claimed, lines = take_over(caplog)

    assert claimed == ids[:2]
    assert lines == ["[WORKER] Took over 2 message(s) from stopped consumers: gone-1 (heartbeat expired)"]


def test_a_consumer_that_never_beat_loses_its_entries_after_claim_idle(redis_client, caplog):
    ids = hold_entries(redis_client, "old-1", [3_000_300, 2_990_000])

    claimed, lines = take_over(caplog)

    assert claimed == ids[:1]
    assert lines == ["[WORKER] Took over 1 message(s) idle > 3000.0s from stopped consumers: old-1 (no heartbeat)"]


def test_a_stopped_consumers_young_entries_stay_and_nothing_is_logged(redis_client, caplog):
    stopped(redis_client, "gone-1")
    hold_entries(redis_client, "gone-1", [990_000])

    assert take_over(caplog) == ([], [])


def test_a_live_consumers_idle_entries_never_move(redis_client, caplog):
    telemetry.write_heartbeat(redis_client, "busy-1", {"name": "busy-1"}, ttl_seconds=60)
    hold_entries(redis_client, "busy-1", [10_000_000])
    stopped(redis_client, "gone-1")
    dead_ids = hold_entries(redis_client, "gone-1", [1_000_300])

    claimed, _ = take_over(caplog)

    assert claimed == dead_ids
    pending = redis_client.xpending(streams.operations_stream(), streams.GROUP)["consumers"]
    assert {c["name"]: c["pending"] for c in pending} == {"busy-1": 1, "taker": 1}
