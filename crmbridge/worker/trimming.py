"""Trim stream entries every consumer group is done with, and only those.

Redis 7 ``XTRIM``/``MAXLEN`` ignore consumer groups: trimming by length alone
deletes entries still pending or never delivered. The rule here:

    floor(group) = min(oldest pending ID of the group,          (XPENDING summary)
                       last-delivered-id of the group + 1)      (undelivered after it)
    MINID        = min(floor(g) for every group g, (now - retention) + 1 ms)
    XTRIM stream MINID <MINID>   (exact: entries with ID < MINID go)

Every entry below a group's floor was delivered to it and is no longer
pending, i.e. acknowledged; below MINID that holds for every group, and the
entry is also older than the retention (stream IDs are Redis server times,
so "now" is read with ``TIME``). A stream with no group is not trimmed at all:
nobody has said what it has consumed (the dead-letter stream has none).

Between reading the groups and the XTRIM, deliveries and acknowledgements only
raise a floor, so they cannot make the trim unsafe; only an operator moving a
group back (``XGROUP SETID``/``CREATE ... 0``) in that millisecond could.
"""

from __future__ import annotations

import redis
from django.conf import settings

from crmbridge.redis_io import streams
from crmbridge.redis_io.streams import StreamId, format_id, parse_id

_MAX_SEQ = 2**64 - 1


def trim_acknowledged(client: redis.Redis, stream: str, *, retention_seconds: int) -> int:
    """Delete the entries of ``stream`` below the safe MINID (see the module docstring); return how many."""
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError:  # no such key
        return 0
    if not groups:
        return 0
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    # Entries whose millisecond is at least the retention old may go: MINID is the next millisecond.
    oldest_kept = (max(now_ms - retention_seconds * 1000 + 1, 0), 0)
    minid = min([oldest_kept] + [group_floor(client, stream, g) for g in groups])
    if minid <= (0, 1):
        return 0
    return client.xtrim(stream, minid=format_id(minid), approximate=False)


def group_floor(client: redis.Redis, stream: str, group: dict) -> StreamId:
    """The lowest ID this group may still need: its oldest pending entry or its first undelivered one."""
    floor = next_id(parse_id(group["last-delivered-id"]))
    if int(group.get("pending") or 0) > 0:
        summary = client.xpending(stream, group["name"])
        if summary.get("min"):
            floor = min(floor, parse_id(summary["min"]))
    return floor


def trim_streams(client: redis.Redis, *, retention_seconds: int | None = None) -> dict[str, int]:
    """Trim every stream the worker consumes; return the count removed per stream."""
    if retention_seconds is None:
        retention_seconds = settings.BITRIX_STREAM_RETENTION_SECONDS
    return {
        stream: trim_acknowledged(client, stream, retention_seconds=retention_seconds)
        for stream in streams.consumed_streams()
    }


def next_id(stream_id: StreamId) -> StreamId:
    ms, seq = stream_id
    return (ms + 1, 0) if seq == _MAX_SEQ else (ms, seq + 1)
