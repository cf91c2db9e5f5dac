"""Read-only facts about a stream and the ``bitrix_workers`` group on it.

A key of another type (``SET bitrix:webhooks x``) is read as a missing stream:
the other streams' facts are still shown, and ``key_problems`` names it.

A missing stream is not an error: it has length 0, no groups and no last ID
(nothing was published yet and no worker created it). A stream whose group is
missing is reported with ``group_exists: False``; then no consumer has read it,
so every entry in it counts as not acknowledged.
"""

from __future__ import annotations

import redis

from crmbridge.redis_io import streams
from crmbridge.redis_io.key_types import is_wrong_type

# When Redis cannot tell the lag (tombstones after the group's position), it is
# counted with one bounded XRANGE; past this many entries the count is capped.
LAG_COUNT_LIMIT = 10_000


def _absent(exc: BaseException) -> bool:
    """No such key, or a key that is not a stream (reported apart, by ``key_problems``)."""
    return streams.is_no_such_key(exc) or is_wrong_type(exc)


def stream_info(client: redis.Redis, stream: str) -> dict:
    """``length``, ``groups`` and ``last_id`` of ``stream`` (the specification's keys)."""
    try:
        info = client.xinfo_stream(stream)
    except redis.ResponseError as exc:
        if _absent(exc):
            return {"length": 0, "groups": 0, "last_id": None}
        raise
    last_id = info.get("last-generated-id")
    return {
        "length": int(info.get("length", 0)),
        "groups": int(info.get("groups", 0)),
        "last_id": None if last_id in (None, "0-0") else last_id,
    }


def group_info(client: redis.Redis, stream: str, group: str = streams.GROUP) -> dict | None:
    """The ``XINFO GROUPS`` row of ``group`` on ``stream``, or ``None`` if either is missing."""
    try:
        rows = client.xinfo_groups(stream)
    except redis.ResponseError as exc:
        if _absent(exc):
            return None
        raise
    return next((row for row in rows if row.get("name") == group), None)


def count_after(client: redis.Redis, stream: str, after_id: str, limit: int = LAG_COUNT_LIMIT) -> int:
    """How many entries follow ``after_id`` (at most ``limit``): the lag when Redis cannot say."""
    return len(client.xrange(stream, min=f"({after_id}", max="+", count=limit))


def oldest_waiting_ms(client: redis.Redis, stream: str, group_row: dict, pending_min_id: str | None) -> int | None:
    """Publish time (ms) of the oldest entry not yet acknowledged, delivered or not.

    That is the older of the oldest pending entry (``XPENDING`` summary) and the
    first entry after the group's last delivered ID (one ``XRANGE ... COUNT 1``).
    """
    candidates = [streams.id_milliseconds(pending_min_id)]
    last_delivered = group_row.get("last-delivered-id") or "0-0"
    if group_row.get("lag") != 0:
        first = client.xrange(stream, min=f"({last_delivered}", max="+", count=1)
        if first:
            candidates.append(streams.id_milliseconds(first[0][0]))
    known = [ms for ms in candidates if ms is not None]
    return min(known) if known else None


def first_entry_ms(client: redis.Redis, stream: str) -> int | None:
    first = client.xrange(stream, min="-", max="+", count=1)
    return streams.id_milliseconds(first[0][0]) if first else None


def queue_status(client: redis.Redis, stream: str, *, now_ms: int, group: str = streams.GROUP) -> dict:
    """What the group still has to do on ``stream``.

    ``pending``: delivered to a consumer, not acknowledged (``XPENDING``).
    ``lag``: not delivered to any consumer yet (``XINFO GROUPS`` lag).
    ``unacknowledged``: their sum, the work left.
    ``oldest_pending_age_seconds``: age of the oldest of those entries.
    """
    length = stream_info(client, stream)["length"]
    row = group_info(client, stream, group)
    if row is None:
        oldest = first_entry_ms(client, stream) if length else None
        return _queue_dict(stream, group, exists=False, lag=length, pending=0, consumers=0, oldest=oldest, now=now_ms)
    pending = int(row.get("pending") or 0)
    pending_min = client.xpending(stream, group).get("min") if pending else None
    lag = row.get("lag")
    if lag is None:
        lag = count_after(client, stream, row.get("last-delivered-id") or "0-0")
    oldest = oldest_waiting_ms(client, stream, row, pending_min) if pending or lag else None
    queue = _queue_dict(
        stream, group, exists=True, lag=int(lag), pending=pending, consumers=int(row.get("consumers") or 0),
        oldest=oldest, now=now_ms,
    )  # fmt: skip
    queue["last_delivered_id"] = row.get("last-delivered-id")
    return queue


def _queue_dict(
    stream: str, group: str, *, exists: bool, lag: int, pending: int, consumers: int, oldest: int | None, now: int
) -> dict:
    return {
        "stream": stream,
        "group": group,
        "group_exists": exists,
        "lag": lag,
        "pending": pending,
        "unacknowledged": lag + pending,
        "consumers": consumers,
        "oldest_pending_age_seconds": None if oldest is None else round(max(0, now - oldest) / 1000, 3),
        "last_delivered_id": None,
    }


def consumers(client: redis.Redis, stream: str, group: str = streams.GROUP, limit: int = 100) -> list[dict]:
    """Consumers of ``group``: name, pending, idle (s) and inactive (s, Redis 7.2+, else ``None``)."""
    try:
        rows = client.xinfo_consumers(stream, group)
    except redis.ResponseError as exc:
        if _absent(exc) or streams.is_nogroup(exc):
            return []
        raise
    return [
        {
            "name": row.get("name", ""),
            "pending": int(row.get("pending") or 0),
            "idle_seconds": round(int(row.get("idle") or 0) / 1000, 3),
            "inactive_seconds": None if row.get("inactive") is None else round(int(row["inactive"]) / 1000, 3),
        }
        for row in rows[:limit]
    ]


def pending_page(
    client: redis.Redis,
    stream: str,
    *,
    group: str = streams.GROUP,
    after: str | None = None,
    count: int = 50,
    min_idle_ms: int | None = None,
) -> list[dict]:
    """One page of pending entries (``XPENDING`` extended form), oldest first, after ``after``."""
    start = f"({after}" if after else "-"
    try:
        rows = client.xpending_range(stream, group, min=start, max="+", count=count, idle=min_idle_ms)
    except redis.ResponseError as exc:
        if _absent(exc) or streams.is_nogroup(exc):
            return []
        raise
    return [
        {
            "id": row["message_id"],
            "consumer": row["consumer"],
            "idle_seconds": round(int(row["time_since_delivered"]) / 1000, 3),
            "deliveries": int(row["times_delivered"]),
        }
        for row in rows
    ]


def pending_entry(client: redis.Redis, stream: str, entry_id: str, group: str = streams.GROUP) -> dict | None:
    """The pending-list row of one entry, or ``None`` if it is not pending (anymore)."""
    try:
        found = client.xpending_range(stream, group, min=entry_id, max=entry_id, count=1)
    except redis.ResponseError as exc:
        if _absent(exc) or streams.is_nogroup(exc):
            return None
        raise
    if not found:
        return None
    row = found[0]
    return {"id": row["message_id"], "consumer": row["consumer"], "deliveries": int(row["times_delivered"])}


def recent_messages(client: redis.Redis, stream: str, count: int = 10) -> list[dict]:
    """The newest ``count`` entries, newest first, as ``XREVRANGE stream + - COUNT 10`` shows them."""
    try:
        entries = client.xrevrange(stream, count=count)
    except redis.ResponseError as exc:
        if _absent(exc):
            return []
        raise
    return [{"id": entry_id, "fields": fields} for entry_id, fields in entries]


def redis_now_ms(client: redis.Redis) -> int:
    """Redis's own clock in ms: stream IDs carry it, so ages are measured against it."""
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000
