"""The ``data`` of ``GET /bitrix/sync/status``: streams, backlog, dead letters, outbox."""

from __future__ import annotations

import redis
from django.conf import settings

from crmbridge.diagnostics.config_facts import bitrix_configured, redis_config
from crmbridge.diagnostics.dead_letter_status import dead_letter_count
from crmbridge.diagnostics.key_problems import as_dicts, key_problems
from crmbridge.diagnostics.outbox_status import outbox_backlog_status
from crmbridge.diagnostics.stream_status import queue_status, redis_now_ms, stream_info
from crmbridge.diagnostics.timestamps import read_marks
from crmbridge.redis_io import contact_counts, streams


def outbox_backlog(client: redis.Redis | None = None) -> int:
    """Operations committed in the database that have not reached Redis yet.

    Rows a live publisher holds (being published, or sent and awaiting their
    deferred delete) are not a backlog: ``waiting_entries`` leaves them out.
    With ``client``, rows whose entry is already in Redis (their deferred delete
    outlived the publisher's lease) are left out too (``outbox_status``).
    """
    return outbox_backlog_status(client).waiting


def sync_status(client: redis.Redis) -> dict:
    """Stream facts of the specification plus the backlog around them. Raises ``redis.RedisError``.

    ``total_messages`` is the sum of both streams' lengths: entries kept in the
    streams, acknowledged or not (acknowledged ones stay until trimmed by
    retention). What is left to do is ``queues.<name>.unacknowledged``.
    A stream key of another type is ``null`` here (its dead-letter count too) and
    named in ``key_problems`` with its type and the fix; the other facts stay.
    """
    problems = key_problems(client)
    broken = {problem.key for problem in problems}
    operations, webhooks = (
        None if stream in broken else stream_info(client, stream)
        for stream in (streams.operations_stream(), streams.webhooks_stream())
    )
    now_ms = redis_now_ms(client)
    return {
        "operations_stream": operations,
        "webhooks_stream": webhooks,
        "total_messages": sum(info["length"] for info in (operations, webhooks) if info),
        "bitrix_configured": bitrix_configured(),
        "bitrix_enabled": bool(settings.BITRIX_ENABLED),
        "queues": {
            "operations": queue_status(client, streams.operations_stream(), now_ms=now_ms),
            "webhooks": queue_status(client, streams.webhooks_stream(), now_ms=now_ms),
        },
        "dead_letter_count": None if streams.dead_letter_stream() in broken else dead_letter_count(client),
        "outbox_backlog": outbox_backlog(client),
        **read_marks(client),
        "redis": redis_config(),
        "key_problems": as_dicts(problems),
        "contacts": contact_counts.read(client),
    }


def sync_status_without_redis() -> dict:
    """The same keys as ``sync_status`` when Redis cannot be reached: what is known, else ``None``."""
    return {
        "operations_stream": None,
        "webhooks_stream": None,
        "total_messages": None,
        "bitrix_configured": bitrix_configured(),
        "bitrix_enabled": bool(settings.BITRIX_ENABLED),
        "queues": None,
        "dead_letter_count": None,
        "outbox_backlog": outbox_backlog(),
        "last_success": None,
        "last_failure": None,
        "redis": redis_config(),
        "key_problems": None,
        "contacts": None,
    }
