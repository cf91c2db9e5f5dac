"""Noticing that Redis lost its data, so that lost records are queued again at once.

Periodic reconciliation (``crmbridge.worker.reconcile``) only requeues records
that waited ``BITRIX_RECONCILE_AFTER`` seconds (300 by default): after Redis
restarted empty, orders whose only copy was in Redis waited about six minutes.
A loss is visible, though, and the worker reconciles the moment it sees one:

* a new ``run_id`` in ``INFO server``: Redis restarted (without persistence
  everything is gone; with it, the last second of writes may be);
* the marker key ``{prefix}redis:marker`` is missing: the worker sets it (no
  expiry) and finds it gone after a FLUSHALL, a failover to a replica that
  never had it, or a restart, also one that happened while no worker ran
  (a worker that starts and finds no marker reconciles once; on the very
  first start of a deployment that finds nothing to do);
* NOGROUP: the stream or its group is gone (the runner reports it).

Reconciling "at once" means ``older_than=0``: every waiting record with no live
message anywhere (outbox, stream, pending list, dead letters) is queued again.
A requeued record that was in fact still on its way is synced twice at worst,
never created twice (the create marker in the database makes the worker look
the deal up by ``ORIGIN_ID`` first).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from crmbridge.redis_io import streams


def marker_key() -> str:
    return streams.key("redis:marker")


@dataclass
class LossWatch:
    client: redis.Redis
    _run_id: str | None = None

    def check(self) -> str | None:
        """Why Redis seems to have lost data since the last check (a sentence for the log), or ``None``."""
        run_id = str(self.client.info("server").get("run_id", ""))
        created = bool(self.client.set(marker_key(), run_id, nx=True))
        previous, self._run_id = self._run_id, run_id
        if previous is not None and run_id != previous:
            return f"Redis restarted (run_id {previous[:12]} is now {run_id[:12]})"
        if created and previous is None:
            return f"no {marker_key()} in Redis: it is new, or lost its data before this worker started"
        if created:
            return f"{marker_key()} is gone: the data was flushed, or Redis failed over to a replica without it"
        return None
