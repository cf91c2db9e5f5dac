"""Periodic chores of a worker, each on its own interval.

* heartbeat (``heartbeat_seconds``)
* keep held entries' idle time low so live workers do not take them over
* take over entries of dead consumers: at once for a consumer whose heartbeat
  expired (or that stopped), ``claim_idle_seconds`` for one that never beat;
  never from a consumer whose heartbeat is live
* relay the outbox (operations saved while Redis was unreachable)
* reconcile (``BITRIX_RECONCILE_INTERVAL``): queue again the records waiting
  with no live message (Redis lost its data; ``crmbridge.reconcile``)
* trim acknowledged stream entries, remove long-idle empty consumers
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import redis
from django.conf import settings

from crmbridge import streams, telemetry

if TYPE_CHECKING:
    from crmbridge.worker.runner import Worker

logger = logging.getLogger("crmbridge.worker")

RELAY_SECONDS = 0.5
TRIM_SECONDS = 60.0
CONSUMER_CLEANUP_SECONDS = 300.0


class Maintenance:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._last: dict[str, float] = {}

    def _due(self, chore: str, interval: float) -> bool:
        now = time.monotonic()
        if now - self._last.get(chore, 0.0) < interval:
            return False
        self._last[chore] = now
        return True

    def run(self) -> None:
        worker, config = self.worker, self.worker.config
        worker.heartbeat.beat(held=len(worker.schedule))
        if self._due("touch", config.claim_idle_seconds / 3) and len(worker.schedule):
            worker.consumer.touch(worker.schedule.messages())
        if not worker.paused_reason and self._due("take_over", config.heartbeat_seconds / 4):
            self.take_over()
        if self._due("relay", RELAY_SECONDS):
            self.relay_outbox()
        if not worker.paused_reason and self._due("reconcile", settings.BITRIX_RECONCILE_INTERVAL):
            self.reconcile()
        if self._due("trim", TRIM_SECONDS):
            self.trim()
        if self._due("consumers", CONSUMER_CLEANUP_SECONDS):
            self.remove_gone_consumers()

    def take_over(self) -> int:
        """Claim and process the entries of dead consumers; returns how many were taken over.

        Liveness comes from the heartbeat (a thread beats every ``heartbeat_seconds``; the
        key expires after three): a consumer that has beaten before and whose heartbeat is
        gone has died or stopped, and its entries move at once. Idle time decides only for
        a consumer that never beat (an older version, a manual XREADGROUP): after
        ``claim_idle_seconds``, the last resort. A live consumer's entries never move,
        however long its chunk takes.
        """
        worker, config = self.worker, self.worker.config
        dead = telemetry.dead_workers(worker.redis) - {worker.name}
        live = {w["name"] for w in telemetry.read_workers(worker.redis) if "name" in w} | {worker.name}
        # An entry a dead consumer read just before dying is still this idle: a lower bound
        # that also stops a second worker from re-claiming what the first just claimed.
        dead_idle_ms = int(config.heartbeat_seconds * 1000)
        room, taken = config.max_chunk, 0
        for stream in worker.consumer.streams:
            for consumer in worker.consumer.consumers_with_pending(stream):
                name = consumer["name"]
                if name in live or room <= 0:
                    continue
                stopped = name in dead
                idle_ms = dead_idle_ms if stopped else int(config.claim_idle_seconds * 1000)
                claimed = worker.consumer.claim_from(stream, name, min_idle_ms=idle_ms, count=room)
                if not claimed:
                    continue
                if stopped:
                    logger.warning(
                        "[WORKER] Took over %s message(s) from stopped consumers: %s (heartbeat expired)",
                        len(claimed), name,
                    )  # fmt: skip
                else:
                    logger.warning(
                        "[WORKER] Took over %s message(s) idle > %ss from stopped consumers: %s (no heartbeat)",
                        len(claimed), config.claim_idle_seconds, name,
                    )  # fmt: skip
                room -= len(claimed)
                taken += len(claimed)
                worker.handle(claimed)
        return taken

    def relay_outbox(self) -> None:
        try:
            from crmbridge.outbox import relay_outbox
        except ImportError:  # publishing not installed
            return
        try:
            relay_outbox()
        except redis.RedisError:
            raise
        except Exception:  # the database: try again next time, keep consuming
            logger.exception("[WORKER] Outbox relay failed")

    def reconcile(self) -> int:
        """One worker at a time (a lock for most of the interval) looks for lost records."""
        worker = self.worker
        lease_ms = int(settings.BITRIX_RECONCILE_INTERVAL * 900)
        if not worker.redis.set(streams.key("reconcile:lock"), worker.name, nx=True, px=max(lease_ms, 1)):
            return 0
        from crmbridge.reconcile import reconcile

        try:
            return reconcile(worker.redis)
        except redis.RedisError:
            raise
        except Exception:  # the database: next interval
            logger.exception("[WORKER] Reconciliation failed")
            return 0

    def trim(self) -> None:
        try:
            from crmbridge.trimming import trim_acknowledged
        except ImportError:
            return
        for stream in worker_streams():
            trim_acknowledged(self.worker.redis, stream, retention_seconds=settings.BITRIX_STREAM_RETENTION_SECONDS)

    def remove_gone_consumers(self) -> None:
        live = {w["name"] for w in telemetry.read_workers(self.worker.redis) if "name" in w}
        idle_ms = int(max(self.worker.config.claim_idle_seconds * 10, 600) * 1000)
        removed = self.worker.consumer.remove_idle_consumers(idle_ms=idle_ms, live_names=live)
        # Names that are neither live nor consumers any more need no takeover: forget them.
        client = self.worker.redis
        consumers = {c["name"] for s in self.worker.consumer.streams for c in self._consumers(s)}
        telemetry.forget_workers(client, sorted(telemetry.known_workers(client) - live - consumers))
        if removed:
            logger.info("[WORKER] Removed idle consumers with nothing pending: %s", ", ".join(removed))

    def _consumers(self, stream: str) -> list[dict]:
        try:
            return self.worker.redis.xinfo_consumers(stream, self.worker.consumer.group)
        except redis.ResponseError:  # no stream or group (yet)
            return []


def worker_streams() -> list[str]:
    """The operations stream, and the webhooks stream when inbound events are installed."""
    try:
        import crmbridge.inbound.processor  # noqa: F401
    except ImportError:
        return [streams.operations_stream()]
    return streams.consumed_streams()
