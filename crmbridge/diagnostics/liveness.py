"""Is the worker on this host alive? The liveness probe of a worker container (``deploy/k8s``).

A worker's heartbeat thread beats only while its loop makes progress
(``Worker.loop_alive``), so a hung loop stops the beats. The probe runs in the
worker's container, a process of its own: it looks for a heartbeat written from
this host name (a pod's host name is the pod's name; the consumer name is
``worker_<host>-<pid>``) and calls the worker alive while that heartbeat is fresh
(``crmbridge.diagnostics.worker_status``: at most two heartbeat intervals old).

* A paused worker is alive: restarting it would not fix its configuration.
* Redis unreachable: the probe cannot tell, and a restart would not bring Redis
  back, so it passes (the worker itself waits and retries; ``/readyz`` and the
  alerts report Redis).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import redis

from crmbridge.diagnostics.worker_status import read_heartbeats


@dataclass(frozen=True)
class Liveness:
    alive: bool
    detail: str


def worker_liveness(client: redis.Redis, *, host: str | None = None) -> Liveness:
    host = host or socket.gethostname()
    try:
        workers = [worker for worker in read_heartbeats(client) if worker["host"] == host]
    except redis.RedisError as exc:
        return Liveness(True, f"Redis unreachable ({type(exc).__name__}): cannot tell; a restart would not help")
    fresh = [worker for worker in workers if worker["state"] != "stale"]
    if fresh:
        worker = fresh[0]
        return Liveness(True, f"{worker['name']} {worker['state']}, beat {worker['last_beat_age_seconds']:.0f}s ago")
    if workers:
        return Liveness(False, f"{workers[0]['name']} stopped beating {workers[0]['last_beat_age_seconds']:.0f}s ago")
    return Liveness(False, f"no worker heartbeat from host {host}")
