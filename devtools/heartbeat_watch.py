"""Is the dev stack's worker alive, not only running? Its heartbeat in Redis says.

A worker process can be up and useless: a loop stuck on something, a process
stopped (SIGSTOP, a debugger). Its heartbeat thread stops beating then (see
``Worker.loop_alive``), so the supervisor reads the last beat the worker wrote
(``{prefix}worker_beats``, kept after the heartbeat hash expires) and calls the
worker hung when it has been silent for ``HUNG_BEATS`` beats.

Silence counts from the last beat seen, or, before the first one, from the
start plus ``STARTUP_GRACE_SECONDS`` (Django's start-up on a busy machine).
While Redis does not answer, nobody can beat: silence counts again from when
it answers.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import redis

from crmbridge.redis_io import telemetry
from crmbridge.redis_io.connection import get_redis, sentinel_configured

HUNG_BEATS = 3
STARTUP_GRACE_SECONDS = 30.0
CHECK_SECONDS = 1.0


@dataclass
class HeartbeatWatch:
    redis_url: str
    interval: float  # the worker's heartbeat_seconds
    pid: int = 0
    started_at: float = 0.0  # Unix time the watched process started
    since: float = 0.0  # Unix time from which silence counts
    _next_check: float = 0.0
    _client: redis.Redis | None = field(default=None, repr=False)

    def watch(self, pid: int) -> None:
        """Watch a freshly started worker process."""
        self.pid, self.started_at = pid, time.time()
        self.since = self.started_at + STARTUP_GRACE_SECONDS
        self._next_check = 0.0

    def hung(self) -> str | None:
        """Why the worker counts as hung (a sentence for the log), or ``None``; looks at most every second."""
        if not self.pid or time.monotonic() < self._next_check:
            return None
        self._next_check = time.monotonic() + CHECK_SECONDS
        now = time.time()
        try:
            last = self._redis().hget(telemetry.beats_key(), f"worker_{socket.gethostname()}-{self.pid}")
        except redis.RedisError:
            self.since = now  # nobody can beat without Redis: not the worker's fault
            return None
        if last and float(last) >= self.started_at:  # this process's beat, not an older one with the same pid
            self.since = max(self.since if self.since <= now else 0.0, float(last))
        silent = now - self.since
        if silent <= HUNG_BEATS * self.interval:
            return None
        return f"no heartbeat for {silent:.0f} s ({HUNG_BEATS} beats of {self.interval:g} s)"

    def _redis(self) -> redis.Redis:
        if self._client is None and sentinel_configured():  # the master is wherever the sentinels say now
            self._client = get_redis(socket_timeout=1, connect_timeout=1, retries=False, name="bitrixsync-run-stack")
        if self._client is None:
            self._client = redis.Redis.from_url(
                self.redis_url, socket_timeout=1, socket_connect_timeout=1, decode_responses=True
            )
        return self._client
