"""The chaos side of ``bench/chaos.py``: worker processes to kill, Redis to break, a sandbox to spoil.

Two schedulers run on their own threads, each from its own seeded random
generator, so a run with the same ``--seed`` makes the same choices (not the
same timings: those depend on the machine):

* ``SystemChaos`` kills a random worker with SIGKILL (and starts a new one),
  kills a web process mid-request (gunicorn starts a new one: a request
  committed but not yet published leaves its operation to the outbox relay),
  restarts Redis, makes Redis unreachable, and XADDs malformed messages;
* ``SandboxChaos`` opens fault windows in the sandbox: 500s, 503
  ``QUERY_LIMIT_EXCEEDED``, timeouts, non-JSON (HTML) bodies, a mix of them,
  and an expired webhook.

Redis is broken three ways, because each hurts a client differently:

* ``redis_restart``: SIGKILL, then start again at once. With ``appendonly yes``
  and ``appendfsync always`` every write Redis acknowledged is in the AOF, so
  nothing may be lost; clients see their connections reset.
* ``redis_down``: SIGTERM, N seconds with nothing listening, start again.
  Clients get "connection refused" at once: the fast failure.
* ``redis_hang``: SIGSTOP for N seconds, then SIGCONT. The kernel still
  accepts connections, nothing answers: every call waits for its timeout.
  This is the slow failure (a swapped-out or stalled server) that finds
  missing timeouts.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests
from stack import BenchStack

OPERATIONS_STREAM = "bitrix:operations"

# What each malformed message is, and the dead-letter reason the worker must give it.
MALFORMED: list[tuple[str, dict, str]] = [
    ("no fields of ours", {"garbage": "1"}, "invalid_message"),
    ("id not a number", {"v": "1", "entity": "deal", "op": "create", "id": "abc"}, "invalid_message"),
    ("future schema version", {"v": "9", "entity": "deal", "op": "create", "id": "1"}, "invalid_message"),
    ("unknown entity", {"v": "1", "entity": "invoice", "op": "create", "id": "1"}, "invalid_message"),
    ("unknown operation", {"v": "1", "entity": "contact", "op": "delete", "id": "1"}, "invalid_message"),
    ("id zero", {"v": "1", "entity": "deal", "op": "update", "id": "0"}, "invalid_message"),
    ("id too long", {"v": "1", "entity": "deal", "op": "update", "id": "9" * 30}, "invalid_message"),
    # str.isdigit() is true for these, int() refuses or misreads them (issue 13): dead at once, alone.
    ("superscript digit id", {"v": "1", "entity": "deal", "op": "update", "id": "²"}, "invalid_message"),
    ("Arabic-Indic digit id", {"v": "1", "entity": "contact", "op": "update", "id": "٣"}, "invalid_message"),
    ("order that never existed", {"v": "1", "entity": "deal", "op": "update", "id": "987654321"}, "record_not_found"),
    ("user that never existed", {"v": "1", "entity": "contact", "op": "create", "id": "987654321"}, "record_not_found"),
    # Redis stores bytes: anyone with XADD can write a value that is not UTF-8.
    ("bytes that are not UTF-8", {"v": "1", "entity": b"\xff\xfedeal", "op": "create", "id": "1"}, "invalid_message"),
]


@dataclass
class FaultLog:
    """What was done, thread-safe: counts per kind and the injected messages."""

    counts: Counter = field(default_factory=Counter)
    injected: dict[str, tuple[str, str]] = field(default_factory=dict)  # stream id -> (description, reason)
    events: list[str] = field(default_factory=list)
    forgotten: int = 0  # injected messages wiped by a Redis flush (with their dead letters)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _started: float = field(default_factory=time.monotonic)

    def note(self, kind: str, detail: str = "") -> None:
        with self._lock:
            self.counts[kind] += 1
            self.events.append(f"{time.monotonic() - self._started:7.1f}s {kind} {detail}".rstrip())

    def forget_injected(self) -> None:
        with self._lock:
            self.forgotten += len(self.injected)
            self.injected.clear()

    def note_injected(self, message_id: str, description: str, reason: str) -> None:
        with self._lock:
            self.injected[message_id] = (description, reason)
            self.counts["malformed"] += 1


# -- worker processes --------------------------------------------------------------------


@dataclass
class WorkerPool:
    """The worker processes of a run: started, killed, replaced, and stopped at the end."""

    stack: BenchStack
    args: list[str]
    env: dict[str, str]
    live: list[subprocess.Popen] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _started: int = 0

    def start(self) -> subprocess.Popen:
        with self._lock:
            self._started += 1
            process = self.stack.start_worker(*self.args, name=f"worker{self._started}", **self.env)
            self.live.append(process)
            return process

    def kill_random(self, rng: random.Random) -> int | None:
        """SIGKILL one live worker; return its pid."""
        with self._lock:
            running = [p for p in self.live if p.poll() is None]
            if not running:
                return None
            victim = rng.choice(running)
            victim.kill()
            victim.wait(10)
            self.live.remove(victim)
            self.killed.append(victim.pid)
            return victim.pid

    def crashed(self) -> list[tuple[int, int]]:
        """(pid, exit code) of workers that exited by themselves: a worker must never die."""
        with self._lock:
            return [(p.pid, p.returncode) for p in self.live if p.poll() is not None]

    def stop_all(self, timeout: float = 20.0) -> dict:
        """SIGTERM every live worker; report exit codes and kill (and name) the stragglers."""
        with self._lock:
            for process in self.live:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            codes, stragglers = {}, []
            for process in self.live:
                try:
                    codes[process.pid] = process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    stragglers.append(process.pid)
                    process.kill()
                    codes[process.pid] = process.wait(10)
            return {"exit_codes": codes, "stragglers": stragglers}


def kill_web_worker(master_pid: int, rng: random.Random) -> int | None:
    """SIGKILL one gunicorn worker (a child of the master, which starts a replacement)."""
    try:
        children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    except OSError:
        return None
    if not children:
        return None
    victim = int(rng.choice(children))
    with contextlib.suppress(ProcessLookupError):
        os.kill(victim, signal.SIGKILL)
    return victim


# -- Redis ----------------------------------------------------------------------------------


class RedisFaults:
    """Break the stack's private Redis; ``heal`` makes sure it runs and answers again."""

    def __init__(self, stack: BenchStack) -> None:
        self.redis = stack.redis
        self._stopped = False

    def restart(self) -> None:
        self.redis.stop(kill=True)
        self.redis.start()

    def flush(self) -> None:
        """Redis loses everything (a replacement, a failover to an empty replica): FLUSHALL."""
        self.redis.client().flushall()

    def down(self, seconds: float, stop: threading.Event) -> None:
        self.redis.stop()
        try:
            stop.wait(seconds)
        finally:
            self.redis.start()

    def hang(self, seconds: float, stop: threading.Event) -> None:
        pid = self.redis.process.pid
        os.kill(pid, signal.SIGSTOP)
        self._stopped = True
        try:
            stop.wait(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)
            self._stopped = False

    def heal(self) -> None:
        if self.redis.process is not None and self._stopped:
            os.kill(self.redis.process.pid, signal.SIGCONT)
        if self.redis.process is None or self.redis.process.poll() is not None:
            self.redis.process = None
            self.redis.start()


def inject_malformed(client: redis.Redis, log: FaultLog, kinds: list[tuple[str, dict, str]]) -> None:
    """XADD malformed messages straight into the operations stream, remembering their IDs."""
    for description, fields, reason in kinds:
        try:
            message_id = client.xadd(OPERATIONS_STREAM, fields)
        except redis.RedisError:
            continue  # Redis is being broken by someone else: this one was not injected
        log.note_injected(message_id, description, reason)


# -- schedulers -------------------------------------------------------------------------------


class _Scheduler(threading.Thread):
    """Runs ``step`` until stopped, with a random pause after each."""

    gap = (2.0, 6.0)

    def __init__(self, name: str, log: FaultLog, seed: int) -> None:
        super().__init__(name=name, daemon=True)
        self.log = log
        self.rng = random.Random(seed)
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        plan: list[str] = []
        try:
            while not self.stop_event.is_set():
                if not plan:
                    plan = self.plan()
                self.step(plan.pop(0))
                self.stop_event.wait(self.rng.uniform(*self.gap))
        except BaseException as exc:  # reported by the run: a broken scheduler means faults stopped
            self.error = exc
        finally:
            self.heal()

    def plan(self) -> list[str]:
        raise NotImplementedError

    def step(self, kind: str) -> None:
        raise NotImplementedError

    def heal(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self.stop_event.set()


class SystemChaos(_Scheduler):
    """Worker kills, Redis restarts/outages/hangs and malformed messages, in shuffled rounds."""

    ROUND = ["kill_worker", "kill_worker", "kill_worker", "kill_worker_two_live", "kill_web", "redis_restart",
             "redis_down", "redis_hang", "redis_flush", "malformed", "malformed"]  # fmt: skip
    # With 3 workers, the victim's entries must move to the two live ones (heartbeat expiry: 3 x 1 s)
    # before a replacement starts.
    TWO_LIVE_SECONDS = 6.0

    def __init__(self, pool: WorkerPool, web_pid: int, redis_faults: RedisFaults, log: FaultLog, seed: int) -> None:
        super().__init__("system-chaos", log, seed)
        self.pool = pool
        self.web_pid = web_pid
        self.redis_faults = redis_faults
        self.client = redis_faults.redis.client()
        self.malformed: list[tuple[str, dict, str]] = []

    def plan(self) -> list[str]:
        return self.rng.sample(self.ROUND, k=len(self.ROUND))

    def step(self, kind: str) -> None:
        if kind == "kill_worker":
            pid = self.pool.kill_random(self.rng)
            self.stop_event.wait(self.rng.uniform(0.0, 2.0))  # sometimes the takeover comes first
            self.pool.start()
            self.log.note(kind, f"pid {pid}")
        elif kind == "kill_worker_two_live":
            pid = self.pool.kill_random(self.rng)
            self.log.note(kind, f"pid {pid}; no replacement for {self.TWO_LIVE_SECONDS:g}s")
            self.stop_event.wait(self.TWO_LIVE_SECONDS)
            self.pool.start()
        elif kind == "redis_flush":
            self.redis_faults.flush()
            # The dead letters went too: injected messages are no longer expected among them.
            self.log.forget_injected()
            self.log.note(kind, "FLUSHALL: streams, groups, dead letters, markers gone")
        elif kind == "kill_web":
            self.log.note(kind, f"pid {kill_web_worker(self.web_pid, self.rng)}")
        elif kind == "redis_restart":
            self.redis_faults.restart()
            self.log.note(kind, "SIGKILL + start (AOF, fsync always)")
        elif kind == "redis_down":
            seconds = self.rng.uniform(3, 8)
            self.log.note(kind, f"{seconds:.1f}s")
            self.redis_faults.down(seconds, self.stop_event)
        elif kind == "redis_hang":
            seconds = self.rng.uniform(3, 8)
            self.log.note(kind, f"SIGSTOP {seconds:.1f}s")
            self.redis_faults.hang(seconds, self.stop_event)
        elif kind == "malformed":  # every kind once before any twice
            if len(self.malformed) < 3:
                self.malformed += self.rng.sample(MALFORMED, k=len(MALFORMED))
            inject_malformed(self.client, self.log, [self.malformed.pop(0) for _ in range(3)])

    def heal(self) -> None:
        self.redis_faults.heal()


# Every answer of the sandbox takes this long (a real portal takes 100-500 ms): workers hold
# their messages for a while, so a SIGKILL often lands in the middle of a batch.
LATENCY_MS = 50
SANDBOX_WINDOWS: dict[str, dict] = {
    "sandbox_500": {"error_500_share": 0.4},
    "sandbox_503": {"error_503_share": 0.4},
    "sandbox_html": {"html_share": 0.4},
    "sandbox_timeout": {"timeout_share": 0.3},
    "sandbox_mixed": {"error_500_share": 0.1, "error_503_share": 0.1, "html_share": 0.1, "timeout_share": 0.1},
    "expired_webhook": {"auth_error": "expired_token"},
}
NO_FAULTS = {"error_500_share": 0, "error_503_share": 0, "html_share": 0, "timeout_share": 0, "auth_error": None}


class SandboxChaos(_Scheduler):
    """Fault windows in the sandbox, one at a time: on for 5-12 s, then off."""

    gap = (2.0, 5.0)

    def __init__(self, sandbox_url: str, log: FaultLog, seed: int, *, timeout_seconds: float) -> None:
        super().__init__("sandbox-chaos", log, seed)
        self.url = f"{sandbox_url}/_sandbox/faults"
        self.timeout_seconds = timeout_seconds
        self.seed = seed

    def plan(self) -> list[str]:
        self._set({"latency_ms": LATENCY_MS})
        return self.rng.sample(list(SANDBOX_WINDOWS), k=len(SANDBOX_WINDOWS))

    def step(self, kind: str) -> None:
        seconds = self.rng.uniform(5, 12)
        self._set({**NO_FAULTS, **SANDBOX_WINDOWS[kind], "timeout_seconds": self.timeout_seconds,
                   "seed": self.rng.randint(0, 2**31)})  # fmt: skip
        self.log.note(kind, f"{seconds:.1f}s {json.dumps(SANDBOX_WINDOWS[kind])}")
        try:
            self.stop_event.wait(seconds)
        finally:
            self._set(NO_FAULTS)

    def heal(self) -> None:
        self._set(NO_FAULTS)

    def _set(self, faults: dict) -> None:
        requests.post(self.url, json=faults, timeout=10).raise_for_status()
