"""The worker's heartbeat in Redis (format in ``crmbridge.redis_io.telemetry``)."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field

import redis

from crmbridge.redis_io import telemetry


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
    _last: float = 0.0

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
            },
            ttl_seconds=self.interval * 3,
        )

    def remove(self) -> None:
        telemetry.remove_heartbeat(self.client, self.name)
