"""Periodic chores of a worker, each on its own interval.

* heartbeat (``heartbeat_seconds``)
* keep held entries' idle time low so live workers do not take them over
* take over entries of dead consumers (XAUTOCLAIM, ``claim_idle_seconds``)
* relay the outbox (operations saved while Redis was unreachable)
* trim acknowledged stream entries, remove long-idle empty consumers

``Chores`` gets its collaborators explicitly and never calls back into the
runner: ``run`` returns the messages it took over and the runner processes
them like any other chunk.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import redis
from django.conf import settings

from crmbridge.publishing.outbox import relay_outbox
from crmbridge.redis_io import telemetry
from crmbridge.worker.config import WorkerConfig
from crmbridge.worker.heartbeat import Heartbeat
from crmbridge.worker.retry_schedule import RetrySchedule
from crmbridge.worker.stream_consumer import StreamConsumer, StreamMessage
from crmbridge.worker.trimming import trim_acknowledged

logger = logging.getLogger("crmbridge.worker")

RELAY_SECONDS = 0.5
TRIM_SECONDS = 60.0
CONSUMER_CLEANUP_SECONDS = 300.0


@dataclass(kw_only=True)
class Chores:
    client: redis.Redis
    consumer: StreamConsumer
    schedule: RetrySchedule
    heartbeat: Heartbeat
    config: WorkerConfig
    _last: dict[str, float] = field(default_factory=dict, init=False)

    def _due(self, chore: str, interval: float) -> bool:
        now = time.monotonic()
        if now - self._last.get(chore, 0.0) < interval:
            return False
        self._last[chore] = now
        return True

    def run(self, *, paused: bool) -> list[StreamMessage]:
        """Do what is due; return the messages taken over from stopped consumers (to be processed)."""
        config = self.config
        self.heartbeat.beat(held=len(self.schedule))
        if self._due("touch", config.claim_idle_seconds / 3) and len(self.schedule):
            self.consumer.touch(self.schedule.messages())
        claimed = []
        if not paused and self._due("autoclaim", max(config.claim_idle_seconds / 4, 0.5)):
            claimed = self.take_over()
        if self._due("relay", RELAY_SECONDS):
            self.relay_outbox()
        if self._due("trim", TRIM_SECONDS):
            self.trim()
        if self._due("consumers", CONSUMER_CLEANUP_SECONDS):
            self.remove_gone_consumers()
        return claimed

    def take_over(self) -> list[StreamMessage]:
        claimed = self.consumer.autoclaim(
            min_idle_ms=int(self.config.claim_idle_seconds * 1000), count=self.config.max_chunk
        )
        if claimed:
            logger.warning(
                "[WORKER] Took over %s message(s) idle > %ss from stopped consumers",
                len(claimed), self.config.claim_idle_seconds,
            )  # fmt: skip
        return claimed

    def relay_outbox(self) -> None:
        try:
            relay_outbox()
        except redis.RedisError:
            raise
        except Exception:  # the database: try again next time, keep consuming
            logger.exception("[WORKER] Outbox relay failed")

    def trim(self) -> None:
        for stream in self.consumer.streams:
            trim_acknowledged(self.client, stream, retention_seconds=settings.BITRIX_STREAM_RETENTION_SECONDS)

    def remove_gone_consumers(self) -> None:
        live = {w["name"] for w in telemetry.read_workers(self.client) if "name" in w}
        idle_ms = int(max(self.config.claim_idle_seconds * 10, 600) * 1000)
        removed = self.consumer.remove_idle_consumers(idle_ms=idle_ms, live_names=live)
        if removed:
            logger.info("[WORKER] Removed idle consumers with nothing pending: %s", ", ".join(removed))
