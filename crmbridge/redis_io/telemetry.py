"""What workers record in Redis for the status endpoints, the admin and metrics.

Written by the worker (``crmbridge.worker``), read by diagnostics. Keys:

``{prefix}workers:<consumer>`` (hash, expires ``3 x heartbeat`` after the last beat)
    ``name``, ``host``, ``pid``, ``started_at``, ``last_beat`` (Unix seconds, float),
    ``state`` (``running`` | ``paused`` | ``stopping``), ``pause_reason``,
    ``processed``, ``retried``, ``dead_lettered`` (counters since start),
    ``current`` (what it holds now, short text), ``config`` (JSON of worker_config)
``{prefix}workers`` (sorted set) consumer name -> last beat, to list workers
    without SCAN; members whose hash has expired are stale and pruned by readers.
``{prefix}worker_beats`` (hash) consumer name -> last beat, never pruned by readers:
    a consumer named here whose heartbeat hash is gone has stopped or died, and
    live workers take over its pending entries at once (``crmbridge.worker.chores``).
``{prefix}stats:<unix minute>`` (hash, kept 2 hours)
    ``processed``, ``retried``, ``dead_lettered`` and the same per
    ``<entity>:<op>`` (e.g. ``processed:deal:create``), for the per-minute chart.
``{prefix}last_success`` / ``{prefix}last_failure`` (strings, JSON)
    ``{"at": unix seconds, "detail": "..."}``.
"""

from __future__ import annotations

import json
import time

import redis

from crmbridge.redis_io import streams

STATS_TTL_SECONDS = 2 * 3600
MAX_WORKERS = 200  # listed at most; more workers than this is not a setup we support


def worker_key(consumer: str) -> str:
    return streams.key(f"workers:{consumer}")


def workers_index_key() -> str:
    return streams.key("workers")


def beats_key() -> str:
    return streams.key("worker_beats")


def stats_key(minute: int) -> str:
    return streams.key(f"stats:{minute}")


def write_heartbeat(client: redis.Redis, consumer: str, fields: dict, *, ttl_seconds: float) -> None:
    now = time.time()
    data = {k: (json.dumps(v) if isinstance(v, dict | list) else str(v)) for k, v in fields.items()}
    data["last_beat"] = f"{now:.3f}"
    pipe = client.pipeline(transaction=True)
    pipe.hset(worker_key(consumer), mapping=data)
    pipe.pexpire(worker_key(consumer), int(ttl_seconds * 1000))
    pipe.zadd(workers_index_key(), {consumer: now})
    pipe.hset(beats_key(), consumer, f"{now:.3f}")
    pipe.execute()


def known_workers(client: redis.Redis) -> set[str]:
    """Consumer names that have ever beaten (live, stopped or dead)."""
    return set(client.hkeys(beats_key()))


def dead_workers(client: redis.Redis) -> set[str]:
    """Consumers that have beaten before and whose heartbeat is gone: stopped or dead."""
    known = known_workers(client)
    return known - live_workers(client) if known else set()


def forget_workers(client: redis.Redis, names: list[str]) -> None:
    if names:
        client.hdel(beats_key(), *names)


def remove_heartbeat(client: redis.Redis, consumer: str) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.delete(worker_key(consumer))
    pipe.zrem(workers_index_key(), consumer)
    pipe.execute()


def read_heartbeats(client: redis.Redis, *, since: float | None = None, limit: int = MAX_WORKERS) -> list[tuple]:
    """``(consumer, indexed beat time, fields)`` for every listed worker, newest first; never prunes.

    ``fields`` is the parsed hash (see ``parse_heartbeat``), ``{}`` when it has
    expired: the worker died without removing it. ``since``: only workers
    that beat after this Unix time.
    """
    low = "-inf" if since is None else since
    rows = client.zrevrangebyscore(workers_index_key(), "+inf", low, start=0, num=limit, withscores=True)
    if not rows:
        return []
    pipe = client.pipeline(transaction=False)
    for name, _score in rows:
        pipe.hgetall(worker_key(name))
    return [(name, score, parse_heartbeat(data)) for (name, score), data in zip(rows, pipe.execute(), strict=True)]


def parse_heartbeat(data: dict) -> dict:
    """A heartbeat hash with ``config`` as a dict, counters and ``pid`` as ints, times as floats.

    A field that does not parse is left out (readers fall back to their default).
    """
    parsed = dict(data)
    if "config" in parsed:
        try:
            config = json.loads(parsed["config"])
        except (TypeError, ValueError):
            config = None
        if isinstance(config, dict):
            parsed["config"] = config
        else:
            del parsed["config"]
    for name, kind in _TYPED_FIELDS.items():
        if name in parsed:
            try:
                parsed[name] = kind(float(parsed[name]))
            except (TypeError, ValueError):
                del parsed[name]
    return parsed


_TYPED_FIELDS = {
    "processed": int, "retried": int, "dead_lettered": int, "pid": int, "last_beat": float, "started_at": float,
}  # fmt: skip


def read_workers(client: redis.Redis) -> list[dict]:
    """Live workers (their heartbeat hash still exists), newest beat first; prunes the expired ones."""
    heartbeats = read_heartbeats(client)
    gone = [name for name, _score, data in heartbeats if not data]
    if gone:
        client.zrem(workers_index_key(), *gone)
    return [data for _name, _score, data in heartbeats if data]


def live_workers(client: redis.Redis) -> set[str]:
    """Names of the workers whose heartbeat hash still exists (``read_workers``)."""
    return {w["name"] for w in read_workers(client) if "name" in w}


def count(client: redis.Redis, outcome: str, entity: str, op: str, n: int = 1) -> None:
    """Add ``n`` to this minute's ``outcome`` counters (processed/retried/dead_lettered)."""
    if n <= 0:
        return
    key = stats_key(int(time.time() // 60))
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(key, outcome, n)
    pipe.hincrby(key, f"{outcome}:{entity}:{op}", n)
    pipe.expire(key, STATS_TTL_SECONDS)
    pipe.execute()


def read_minutes(client: redis.Redis, minutes: int = 60) -> list[dict]:
    """The last ``minutes`` per-minute counters, oldest first (zeros where none)."""
    now_minute = int(time.time() // 60)
    wanted = list(range(now_minute - minutes + 1, now_minute + 1))
    pipe = client.pipeline(transaction=False)
    for minute in wanted:
        pipe.hgetall(stats_key(minute))
    rows = []
    for minute, data in zip(wanted, pipe.execute(), strict=True):
        rows.append(
            {
                "minute": minute * 60,
                "processed": int(data.get("processed", 0)),
                "retried": int(data.get("retried", 0)),
                "dead_lettered": int(data.get("dead_lettered", 0)),
                "by_kind": {k: int(v) for k, v in data.items() if k.count(":") == 2},
            }
        )
    return rows


def mark(client: redis.Redis, which: str, detail: str) -> None:
    """Record the time of the last ``success`` or ``failure``."""
    client.set(streams.key(f"last_{which}"), json.dumps({"at": time.time(), "detail": detail[:500]}))


def read_mark(client: redis.Redis, which: str) -> dict | None:
    """``{"at": Unix seconds (float), "detail": str}`` of the last ``success``/``failure``, or ``None``."""
    raw = client.get(streams.key(f"last_{which}"))
    try:
        mark = json.loads(raw) if raw else None
        return {"at": float(mark["at"]), "detail": str(mark.get("detail", ""))}
    except (TypeError, ValueError, KeyError, AttributeError):
        return None
