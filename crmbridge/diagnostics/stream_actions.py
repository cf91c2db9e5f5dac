"""What the dashboard's buttons do to the streams (services: they write).

* ``retry_pending_now``: ``XADD`` a copy of a pending entry to the same stream
  and ``XACK`` the original, in one Lua script (XACK only if XADD succeeded). The copy is delivered afresh
  (delivery count 1) to any worker; the worker syncs the record's current
  state, so a duplicate is harmless if the original was being processed.
* ``move_pending_to_dead``: the dead-letter move of ``crmbridge.worker.dead_letters``
  with reason ``manual``.
* ``requeue_all_dead``: requeues every dead letter in bounded batches, within
  a bound per click; the answer says how many are left.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from crmbridge.diagnostics.stream_status import pending_entry
from crmbridge.redis_io import streams
from crmbridge.worker import dead_letters
from crmbridge.worker.dead_letters import DeadLetter

REQUEUE_BATCH = 100
REQUEUE_MAX_PER_CALL = 5_000
REQUEUE_TIME_BUDGET_SECONDS = 10.0


def allowed_stream(stream: str) -> bool:
    """Only the consumed streams can be acted on from the dashboard."""
    return stream in streams.consumed_streams()


def _entry_fields(client: redis.Redis, stream: str, entry_id: str) -> dict | None:
    found = client.xrange(stream, min=entry_id, max=entry_id, count=1)
    return found[0][1] if found else None


def retry_pending_now(client: redis.Redis, stream: str, entry_ids: Iterable[str]) -> int:
    """Re-add each pending entry as a new message and acknowledge the original. Returns how many."""
    done = 0
    for entry_id in entry_ids:
        fields = _entry_fields(client, stream, entry_id) if pending_entry(client, stream, entry_id) else None
        if not fields:
            continue
        dead_letters.add_then_ack(client, stream, stream, streams.GROUP, entry_id, {**fields, "retried_from": entry_id})
        done += 1
    return done


def move_pending_to_dead(client: redis.Redis, stream: str, entry_ids: Iterable[str]) -> int:
    """Move pending entries to the dead letters with reason ``manual``. Returns how many."""
    letters = []
    for entry_id in entry_ids:
        pending = pending_entry(client, stream, entry_id)
        if pending is None:
            continue
        letters.append(
            DeadLetter(
                source_stream=stream,
                source_id=entry_id,
                payload=_entry_fields(client, stream, entry_id) or {},
                reason="manual",
                error_description="moved to the dead letters from the admin dashboard",
                attempts=pending["deliveries"],
                consumer=pending["consumer"],
            )
        )
    return dead_letters.move_to_dead_letters(client, letters)


@dataclass(frozen=True)
class RequeueAllResult:
    requeued: int
    skipped: int
    remaining: int


def requeue_all_dead(client: redis.Redis, *, max_total: int = REQUEUE_MAX_PER_CALL) -> RequeueAllResult:
    """Requeue dead letters oldest first, ``REQUEUE_BATCH`` at a time, up to ``max_total`` and a time budget.

    Letters that cannot be requeued (no payload) are skipped and stay.
    """
    dead = streams.dead_letter_stream()
    deadline = time.monotonic() + REQUEUE_TIME_BUDGET_SECONDS
    cursor, requeued, skipped = "-", 0, 0
    while requeued + skipped < max_total and time.monotonic() < deadline:
        batch = client.xrange(dead, min=cursor, max="+", count=min(REQUEUE_BATCH, max_total - requeued - skipped))
        if not batch:
            break
        ids = [entry_id for entry_id, _fields in batch]
        done = dead_letters.requeue(client, ids)
        requeued += done
        skipped += len(ids) - done
        cursor = f"({ids[-1]}"
    return RequeueAllResult(requeued=requeued, skipped=skipped, remaining=int(client.xlen(dead)))
