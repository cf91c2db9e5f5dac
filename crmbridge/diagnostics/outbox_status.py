"""The outbox as an operator should see it: operations that have not reached Redis.

A row can outlive its publish: a web request that published after commit
leaves the delete to its process's next write ("deferred deletes" in
``crmbridge.publishing.outbox``). If that process goes idle, the row stays, unclaimed,
until a relay comes by and finds the entry's "sent" marker in Redis. Such a
row is *not* a backlog: the operation is in the stream. This module tells the
two apart by checking the markers (``crmbridge.publishing.outbox.already_sent``, for at
most ``SCAN_LIMIT`` oldest rows; rows past that count as waiting).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import redis
from django.utils import timezone

SCAN_LIMIT = 1000


@dataclass(frozen=True)
class OutboxBacklog:
    waiting: int  # committed, not in Redis yet: what the relay still has to send
    already_sent: int  # in Redis already; the row awaits its deferred delete
    oldest_waiting_seconds: float | None
    last_error: str


def outbox_backlog_status(client: redis.Redis | None) -> OutboxBacklog:
    """Count the outbox rows nobody holds, split by whether Redis has them. ``client=None``: Redis is down."""
    from crmbridge.publishing.outbox import already_sent, waiting_entries

    rows = list(waiting_entries().order_by("id").only("id", "dedup_key", "created_at", "last_error")[:SCAN_LIMIT])
    beyond = waiting_entries().count() - len(rows) if len(rows) == SCAN_LIMIT else 0
    sent = [False] * len(rows)
    if client is not None and rows:
        with contextlib.suppress(redis.RedisError):  # cannot tell: every row counts as waiting
            sent = already_sent(client, rows)
    unsent = [row for row, in_redis in zip(rows, sent, strict=True) if not in_redis]
    oldest = min((row.created_at for row in unsent), default=None)
    return OutboxBacklog(
        waiting=len(unsent) + beyond,
        already_sent=len(rows) - len(unsent),
        oldest_waiting_seconds=None if oldest is None else (timezone.now() - oldest).total_seconds(),
        last_error=next((row.last_error for row in unsent if row.last_error), ""),
    )
