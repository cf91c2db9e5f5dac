"""The worker's heartbeat in Redis (format in ``crmbridge.redis_io.telemetry``)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from crmbridge.redis_io import telemetry

logger = logging.getLogger("crmbridge.worker")


def consumer_name() -> str:
    """``worker_<host>-<pid>``: unique per process, readable in XINFO CONSUMERS."""
    return f"worker_{socket.gethostname()}-{os.getpid()}"


@dataclass
class Counters:
    processed: int = 0
    retried: int = 0
    dead_lettered: int = 0


@dataclass
class Heartbeat:
    client: redis.Redis
    name: str
    config: dict
    interval: float
    state: str = "running"
    pause_reason: str = ""
    counters: Counters = field(default_factory=Counters)
    started_at: float = field(default_factory=time.time)
    # More fields for each beat (the portal client's counters, exported by /metrics).
    extra_fields: Callable[[], dict] | None = None
    _last: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def beat(self, *, held: int = 0, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        telemetry.write_heartbeat(
            self.client,
            self.name,
            {
                "name": self.name,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started_at": f"{self.started_at:.3f}",
                "state": self.state,
                "pause_reason": self.pause_reason,
                "processed": self.counters.processed,
                "retried": self.counters.retried,
                "dead_lettered": self.counters.dead_lettered,
                "current": f"{held} message(s) held for retry" if held else "",
                "config": self.config,
                **(self.extra_fields() if self.extra_fields else {}),
            },
            ttl_seconds=self.interval * 3,
        )

    def start_thread(self, alive: Callable[[], bool]) -> None:
        """Beat from a thread of its own, so a long Bitrix request does not look like death.

        Live workers take over the entries of a consumer whose heartbeat expired, so
        the beat must not stop while the loop waits on the network; it stops when
        ``alive()`` says the loop itself is stuck (see ``Worker.loop_alive``).
        """
        self._stop.clear()
        threading.Thread(target=self._beat_while, args=(alive,), name=f"heartbeat-{self.name}", daemon=True).start()

    def _beat_while(self, alive: Callable[[], bool]) -> None:
        while not self._stop.wait(self.interval / 2):
            if not alive():
                continue
            try:
                self.beat()
            except redis.RedisError as exc:  # the loop sees Redis trouble too; keep trying
                logger.debug("[WORKER] Heartbeat failed: %s", exc)

    def remove(self) -> None:
        self._stop.set()
        with contextlib.suppress(redis.RedisError):
            telemetry.remove_heartbeat(self.client, self.name)
