"""Read-only views of the dead-letter stream ``{prefix}dead``, newest first, paged.

A dead-letter key of another type reads as an empty stream here; ``key_problems`` names it.
"""

from __future__ import annotations

import redis

from crmbridge.redis_io import streams
from crmbridge.redis_io.key_types import is_wrong_type
from crmbridge.worker.dead_letters import parse_dead_letter


def dead_letter_count(client: redis.Redis) -> int:
    try:
        return int(client.xlen(streams.dead_letter_stream()))
    except redis.ResponseError as exc:
        if is_wrong_type(exc):
            return 0
        raise


def dead_letter_page(client: redis.Redis, *, before: str | None = None, count: int = 25) -> list[dict]:
    """Up to ``count`` dead letters older than ``before`` (exclusive), newest first."""
    newest = f"({before}" if before else "+"
    try:
        entries = client.xrevrange(streams.dead_letter_stream(), max=newest, min="-", count=count)
    except redis.ResponseError as exc:
        if is_wrong_type(exc):
            return []
        raise
    return [parse_dead_letter(entry_id, fields) for entry_id, fields in entries]


def latest_dead_letter(client: redis.Redis) -> dict | None:
    page = dead_letter_page(client, count=1)
    return page[0] if page else None
