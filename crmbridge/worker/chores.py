"""Periodic chores of a worker, each on its own interval.

* heartbeat (``heartbeat_seconds``; a thread beats too, see ``Heartbeat.start_thread``)
* while a stream is set aside for its key's type, look at the key again each heartbeat
* keep held entries' idle time low so live workers do not take them over
* take over entries of dead consumers: at once for a consumer whose heartbeat
  expired (or that stopped), ``claim_idle_seconds`` for one that never beat;
  never from a consumer whose heartbeat is live
* relay the outbox (operations saved while Redis was unreachable)
* reconcile (``BITRIX_RECONCILE_INTERVAL``): queue again the records waiting
  with no live message (Redis lost its data; ``crmbridge.worker.reconcile``)
* watch for a loss of Redis's data (each heartbeat, paused or not: a new
  ``run_id``, the marker key gone, or NOGROUP reported by the runner) and then
  reconcile at once, whatever the records' age (``crmbridge.worker.redis_loss``)
* trim acknowledged stream entries, remove long-idle empty consumers and
  forget the beats of names that are neither live nor consumers

``Chores`` gets its collaborators explicitly and never calls back into the
runner: ``run`` returns the messages it took over and the runner processes
them like any other chunk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import redis
from django.conf import settings

from crmbridge.publishing.outbox import relay_outbox
from crmbridge.redis_io import streams, telemetry
from crmbridge.worker.config import WorkerConfig
from crmbridge.worker.heartbeat import Heartbeat
from crmbridge.worker.reconcile import LIMIT as RECONCILE_LIMIT
from crmbridge.worker.reconcile import reconcile
from crmbridge.worker.redis_loss import LossWatch
from crmbridge.worker.retry_schedule import RetrySchedule
from crmbridge.worker.stream_consumer import StreamConsumer, StreamMessage
from crmbridge.worker.trimming import trim_acknowledged

logger = logging.getLogger("crmbridge.worker")

RELAY_SECONDS = 0.5
TRIM_SECONDS = 60.0
CONSUMER_CLEANUP_SECONDS = 300.0
LOSS_RECONCILE_ROUNDS = 20  # x reconcile.LIMIT records at once after a loss; the periodic rounds do the rest
LOSS_LOCK_SECONDS = 30.0  # one worker reconciles a loss; the others see its messages as live

T = TypeVar("T")


@dataclass(kw_only=True)
class Chores:
    client: redis.Redis
    consumer: StreamConsumer
    schedule: RetrySchedule
    heartbeat: Heartbeat
    config: WorkerConfig
    _last: dict[str, float] = field(default_factory=dict, init=False)
    _loss: LossWatch | None = field(default=None, init=False)
    _loss_reason: str = field(default="", init=False)

    def loss_noticed(self, reason: str) -> None:
        """The runner saw a sign of lost data (NOGROUP): reconcile at the next ``run``."""
        self._loss_reason = self._loss_reason or reason

    def _due(self, chore: str, interval: float) -> bool:
        now = time.monotonic()
        if now - self._last.get(chore, 0.0) < interval:
            return False
        self._last[chore] = now
        return True

    def run(self, *, paused: bool) -> list[StreamMessage]:
        """Do what is due; return messages to process now: taken over, or this worker's own strays."""
        config = self.config
        self.heartbeat.beat(held=len(self.schedule))
        if self._due("loss", config.heartbeat_seconds) or self._loss_reason:
            self.watch_for_loss()
        if self.consumer.broken:
            self.schedule.drop_streams(self.consumer.broken)
            if self._due("key_types", config.heartbeat_seconds):
                self.consumer.ensure_groups()  # takes back a stream whose key is fixed
        if self._due("touch", config.claim_idle_seconds / 3) and len(self.schedule):
            self.consumer.touch(self.schedule.messages())
        if not paused and self._due("take_over", config.heartbeat_seconds / 4):
            claimed = self.take_over()
            if claimed:  # processed before anything else can fail (the other chores stay due)
                return claimed
        if self._due("strays", config.heartbeat_seconds):
            strays = self.own_strays()
            if strays:
                return strays
        if self._due("relay", RELAY_SECONDS):
            self.relay_outbox()
        if not paused and self._due("reconcile", settings.BITRIX_RECONCILE_INTERVAL):
            self.reconcile()
        if self._due("trim", TRIM_SECONDS):
            self.trim()
        if self._due("consumers", CONSUMER_CLEANUP_SECONDS):
            self.remove_gone_consumers()
        return []

    def watch_for_loss(self) -> int:
        """If Redis lost its data since the last look, queue every waiting record with no message again now."""
        self._loss = self._loss or LossWatch(self.client)
        reason = self._loss.check() or self._loss_reason
        self._loss_reason = ""
        if not reason:
            return 0
        if not self.client.set(
            streams.key("reconcile:loss:lock"), self.consumer.name, nx=True, px=int(LOSS_LOCK_SECONDS * 1000)
        ):
            return 0
        logger.warning("[WORKER] Redis lost data? %s: reconciling now (not waiting for BITRIX_RECONCILE_AFTER)", reason)
        total = 0
        for _ in range(LOSS_RECONCILE_ROUNDS):
            queued = _survive_database_errors("Reconciliation", lambda: reconcile(self.client, older_than=0)) or 0
            total += queued
            if queued < RECONCILE_LIMIT:
                break
        logger.warning("[WORKER] Reconciliation after the loss: %s record(s) queued again", total)
        return total

    def own_strays(self) -> list[StreamMessage]:
        """This worker's pending entries that nothing holds (a chunk failed mid-way): process them again."""
        held = {(m.stream, m.id) for m in self.schedule.messages()}
        idle_ms = int(self.config.heartbeat_seconds * 1000)
        strays = self.consumer.strays(held, min_idle_ms=idle_ms, count=self.config.max_chunk)
        if strays:
            logger.warning(
                "[WORKER] Found %s message(s) of %s left undecided by an interrupted chunk; processing them again",
                len(strays),
                self.consumer.name,
            )
        return strays

    def take_over(self) -> list[StreamMessage]:
        """Claim the entries of dead consumers (at most ``max_chunk``); the caller processes them.

        Liveness comes from the heartbeat (a thread beats every ``heartbeat_seconds``; the
        key expires after three): a consumer that has beaten before and whose heartbeat is
        gone has died or stopped, and its entries move at once. Idle time decides only for
        a consumer that never beat (an older version, a manual XREADGROUP): after
        ``claim_idle_seconds``, the last resort. A live consumer's entries never move,
        however long its chunk takes.
        """
        me = self.consumer.name
        dead = telemetry.dead_workers(self.client) - {me}
        live = telemetry.live_workers(self.client) | {me}
        claimed: list[StreamMessage] = []
        try:
            for stream in self.consumer.streams:
                for consumer in self.consumer.consumers_with_pending(stream):
                    room = self.config.max_chunk - len(claimed)
                    if consumer["name"] not in live and room > 0:
                        claimed += self._claim(stream, consumer["name"], stopped=consumer["name"] in dead, count=room)
        except redis.RedisError:
            if not claimed:
                raise
            # What was claimed is now this worker's: dropping it would strand it until a restart.
            logger.warning("[WORKER] Takeover interrupted by a Redis error; processing the %s claimed", len(claimed))
        return claimed

    def _claim(self, stream: str, name: str, *, stopped: bool, count: int) -> list[StreamMessage]:
        # An entry a dead consumer read just before dying is still this idle: a lower bound
        # that also stops a second worker from re-claiming what the first just claimed.
        idle_seconds = self.config.heartbeat_seconds if stopped else self.config.claim_idle_seconds
        claimed = self.consumer.claim_from(stream, name, min_idle_ms=int(idle_seconds * 1000), count=count)
        if claimed and stopped:
            logger.warning(
                "[WORKER] Took over %s message(s) from stopped consumers: %s (heartbeat expired)", len(claimed), name
            )
        elif claimed:
            logger.warning(
                "[WORKER] Took over %s message(s) idle > %ss from stopped consumers: %s (no heartbeat)",
                len(claimed), self.config.claim_idle_seconds, name,
            )  # fmt: skip
        return claimed

    def relay_outbox(self) -> None:
        _survive_database_errors("Outbox relay", relay_outbox)

    def reconcile(self) -> int:
        """One worker at a time (a lock for most of the interval) looks for lost records; returns how many."""
        lease_ms = int(settings.BITRIX_RECONCILE_INTERVAL * 900)
        if not self.client.set(streams.key("reconcile:lock"), self.consumer.name, nx=True, px=max(lease_ms, 1)):
            return 0
        return _survive_database_errors("Reconciliation", lambda: reconcile(self.client)) or 0

    def trim(self) -> None:
        for stream in self.consumer.streams:
            trim_acknowledged(self.client, stream, retention_seconds=settings.BITRIX_STREAM_RETENTION_SECONDS)

    def remove_gone_consumers(self) -> None:
        live = telemetry.live_workers(self.client)
        idle_ms = int(max(self.config.claim_idle_seconds * 10, 600) * 1000)
        removed = self.consumer.remove_idle_consumers(idle_ms=idle_ms, live_names=live)
        # Names that are neither live nor consumers any more need no takeover: forget them.
        consumers = {c["name"] for s in self.consumer.streams for c in self._consumers(s)}
        telemetry.forget_workers(self.client, sorted(telemetry.known_workers(self.client) - live - consumers))
        if removed:
            logger.info("[WORKER] Removed idle consumers with nothing pending: %s", ", ".join(removed))

    def _consumers(self, stream: str) -> list[dict]:
        try:
            return self.consumer.consumers(stream)
        except redis.ResponseError:  # no stream or group (yet)
            return []


def _survive_database_errors(chore: str, run: Callable[[], T]) -> T | None:
    """Run a chore that uses the database: Redis errors go to the loop, others are logged (next time)."""
    try:
        return run()
    except redis.RedisError:
        raise
    except Exception:  # the database: try again next time, keep consuming
        logger.exception("[WORKER] %s failed", chore)
        return None
