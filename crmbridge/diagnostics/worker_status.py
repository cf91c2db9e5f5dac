"""Worker liveness from the heartbeats the workers keep in Redis (``crmbridge.redis_io.telemetry``).

Workers are separate processes (``manage.py run_bitrix_worker``), possibly on
other hosts, so "is the worker running" means "has a worker beaten recently":

* **fresh**: the last beat is at most ``2 x heartbeat interval`` old.
* **stale**: a heartbeat exists but is older than that, or its hash has
  expired while the worker is still listed in ``{prefix}workers`` (it died
  without a clean shutdown, which would have removed it). Listed workers are
  considered for ``STALE_WINDOW_SECONDS``; older ones are ignored.

``worker_task_status`` summarises all workers:

* ``running``: at least one fresh worker in state ``running``;
* ``paused``: fresh workers exist but all are paused by a configuration error
  (``pause_reason`` says which);
* ``stale``: no fresh worker, but one beat recently and stopped beating (crash,
  hang, lost Redis connection);
* ``stopped``: no worker at all, or only workers that are shutting down.
"""

from __future__ import annotations

import time

import redis

from crmbridge.bitrix.webhook_url import redact
from crmbridge.diagnostics.config_facts import heartbeat_interval, worker_config
from crmbridge.diagnostics.key_problems import as_dicts, key_problems
from crmbridge.diagnostics.stream_status import queue_status, redis_now_ms
from crmbridge.diagnostics.timestamps import iso_or_none, read_marks
from crmbridge.redis_io import streams, telemetry
from crmbridge.worker.config import SPEC_KEYS, spec_worker_config

STALE_WINDOW_SECONDS = 3600
_INT_FIELDS = ("pid", "processed", "retried", "dead_lettered")


def read_heartbeats(client: redis.Redis) -> list[dict]:
    """Every worker listed in the heartbeat index with its hash (``{}`` when expired), newest first.

    Unlike ``telemetry.read_workers`` this never prunes: a listed worker whose
    hash has expired is exactly the "died without saying goodbye" case to show.
    """
    since = time.time() - STALE_WINDOW_SECONDS
    return [_heartbeat(name, score, data) for name, score, data in telemetry.read_heartbeats(client, since=since)]


def _heartbeat(name: str, score: float, data: dict) -> dict:
    now = time.time()
    config: dict = data.get("config", {})
    last_beat = data.get("last_beat", score)
    interval = _float(config.get("heartbeat_seconds"), heartbeat_interval())
    age = max(0.0, now - last_beat)
    fresh = bool(data) and age <= 2 * interval
    state = (data.get("state") or "running") if fresh else "stale"
    worker = {
        "name": data.get("name") or name,
        "host": data.get("host", ""),
        "pid": None,
        "started_at": iso_or_none(data.get("started_at")),
        "last_beat": iso_or_none(last_beat),
        "last_beat_age_seconds": round(age, 3),
        "fresh": fresh,
        "state": state,
        "pause_reason": redact(data.get("pause_reason") or "") or None,
        "current": redact(data.get("current") or "") or None,
        "processed": 0,
        "retried": 0,
        "dead_lettered": 0,
    }
    worker.update({field: data[field] for field in _INT_FIELDS if field in data})
    worker["config"] = config
    worker["extra"] = {k: v for k, v in data.items() if k not in _KNOWN_FIELDS}
    return worker


_KNOWN_FIELDS = {
    "name", "host", "pid", "started_at", "last_beat", "state", "pause_reason",
    "current", "config", "processed", "retried", "dead_lettered",
}  # fmt: skip


def _float(value, default):
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def task_status(workers: list[dict]) -> str:
    """``running`` | ``paused`` | ``stale`` | ``stopped`` (see the module docstring)."""
    fresh_states = {w["state"] for w in workers if w["fresh"]}
    if "running" in fresh_states:
        return "running"
    if "paused" in fresh_states:
        return "paused"
    if any(not w["fresh"] for w in workers):
        return "stale"
    return "stopped"


def is_running(workers: list[dict]) -> bool:
    """A fresh heartbeat exists from a worker that is not shutting down."""
    return any(w["fresh"] and w["state"] != "stopping" for w in workers)


def pause_reason(workers: list[dict]) -> str | None:
    return next((w["pause_reason"] for w in workers if w["fresh"] and w["state"] == "paused"), None)


def running_worker_config(workers: list[dict]) -> dict:
    """``worker_config`` of the freshest worker (command-line options included), else from settings."""
    for worker in workers:
        config = worker.get("config") or {}
        if worker["fresh"] and all(key in config for key in SPEC_KEYS):
            return spec_worker_config(config)
    return worker_config()


def public_worker(worker: dict) -> dict:
    """A worker as the API lists it (without the free-form ``extra`` fields)."""
    return {k: v for k, v in worker.items() if k not in ("extra", "config")}


def worker_status(client: redis.Redis) -> dict:
    """The ``data`` of ``GET /bitrix/sync/worker/status``. Raises ``redis.RedisError`` if Redis is down.

    ``pending_messages_count`` is every message of the consumed streams not yet
    acknowledged: delivered but unacknowledged (``pending_delivered``) plus not
    delivered yet (``lag``).
    """
    from django.conf import settings

    workers = read_heartbeats(client)
    now_ms = redis_now_ms(client)
    queues = [queue_status(client, stream, now_ms=now_ms) for stream in streams.consumed_streams()]
    ages = [q["oldest_pending_age_seconds"] for q in queues if q["oldest_pending_age_seconds"] is not None]
    return {
        "worker_enabled": bool(settings.BITRIX_WORKER_ENABLED),
        "worker_running": is_running(workers),
        "worker_task_exists": bool(workers),
        "worker_task_status": task_status(workers),
        "pending_messages_count": sum(q["unacknowledged"] for q in queues),
        "worker_config": running_worker_config(workers),
        "pending_delivered": sum(q["pending"] for q in queues),
        "lag": sum(q["lag"] for q in queues),
        "oldest_pending_age_seconds": max(ages) if ages else None,
        "pause_reason": pause_reason(workers),
        "live_workers": sum(1 for w in workers if w["fresh"]),
        "workers": [public_worker(w) for w in workers],
        **read_marks(client),
        "key_problems": as_dicts(key_problems(client)),
    }


def worker_status_without_redis() -> dict:
    """The same keys as ``worker_status`` when Redis cannot be reached: what is known, else ``None``."""
    from django.conf import settings

    return {
        "worker_enabled": bool(settings.BITRIX_WORKER_ENABLED),
        "worker_running": None,
        "worker_task_exists": None,
        "worker_task_status": None,
        "pending_messages_count": None,
        "worker_config": worker_config(),
        "pending_delivered": None,
        "lag": None,
        "oldest_pending_age_seconds": None,
        "pause_reason": None,
        "live_workers": None,
        "workers": [],
        "last_success": None,
        "last_failure": None,
        "key_problems": None,
    }
