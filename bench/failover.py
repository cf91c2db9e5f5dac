"""Redis Sentinel failover under traffic: SIGKILL the master, then prove nothing was lost or duplicated.

    .venv/bin/python bench/failover.py                  # about a minute
    .venv/bin/python bench/failover.py --record         # also append the numbers to bench/RESULTS.md
    .venv/bin/python bench/failover.py --json           # the numbers as JSON (tests/scale reads them)

What runs, all private to the run: a Sentinel deployment (``devtools.testing.sentinel``:
master, one replica, three sentinels with ``down-after-milliseconds`` 1000 and
``failover-timeout`` 2000, no persistence), a temporary SQLite database, the
Bitrix sandbox, the web app under gunicorn (2 processes) and 2
``run_bitrix_worker`` processes, all configured with ``REDIS_SENTINELS`` and
``REDIS_SENTINEL_MASTER`` only (no Redis address). Client threads
(``chaos_clients``) register users, place and change orders over HTTP for
``--duration`` seconds.

At ``--kill-at`` (a fraction of the duration) the run makes the failover lose
data, as asynchronous replication can: it stops the master's replication
stream (``HoldingProxy``) and pauses both workers (SIGSTOP, as if busy) until
the master has acknowledged ``--unreplicated`` new stream entries the replica
never got; then SIGKILLs the master and resumes the workers. Those entries
are gone with it; reconciliation (``BITRIX_RECONCILE_AFTER`` 3 s, checked
every second) must queue their records again.

Measured: the failover (SIGKILL to the sentinels agreeing on a promoted
replica), when writes resumed (the first new stream entry on the new master,
from SIGKILL and from the failover), the lost entries and the records
published again by reconciliation, API answers (any 5xx is a failure), and at
the end, once drained, every order and user against its one deal or contact
in the sandbox (``chaos_check``: lost, duplicated, wrong fields).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import redis
from redis.sentinel import Sentinel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chaos import start_web
from chaos_check import Findings, backlog, check_records, expected_records, log_anomalies, wait_drained
from chaos_clients import Tally, start_clients
from chaos_faults import WorkerPool
from stack import ROOT, BenchStack
from throughput import machine

from devtools.testing.sentinel import MASTER_NAME, SentinelCluster

RESULTS = ROOT / "bench" / "RESULTS.md"
OPERATIONS = "bitrix:operations"
WORKER_ARGS = ["--poll-interval", "0.5", "--claim-idle", "5", "--retry-base", "0.2", "--retry-max", "2"]
WORKER_ENV = {"BITRIX_WORKER_HEARTBEAT": "2", "LOG_LEVEL": "INFO",
              "BITRIX_RECONCILE_AFTER": "3", "BITRIX_RECONCILE_INTERVAL": "1"}  # fmt: skip


class SentinelStack(BenchStack):
    """``BenchStack`` whose Redis is a Sentinel deployment: the processes know only the sentinels."""

    def __init__(self) -> None:
        super().__init__(rate=None, burst=None)
        self.cluster = SentinelCluster(down_after_ms=1000, failover_timeout_ms=2000)

    def start_redis(self) -> None:
        self.cluster.start()

    def stop_redis(self) -> None:
        self.cluster.cleanup()
        shutil.rmtree(self.redis.dir, ignore_errors=True)  # the unused single server's empty directory

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(**{**self.cluster.env(), **extra})

    def data_client(self) -> redis.Redis:
        """The run's own reader, through the sentinels like the app."""
        sentinels = [("127.0.0.1", s.port) for s in self.cluster.sentinels]
        return Sentinel(sentinels, socket_timeout=2).master_for(MASTER_NAME, decode_responses=True, socket_timeout=5)


@dataclass
class Numbers:
    failover_seconds: float = 0.0  # SIGKILL -> sentinels agree on the promoted replica
    writes_resumed_after_kill: float | None = None  # SIGKILL -> first new stream entry on the new master
    writes_resumed_after_failover: float | None = None
    unreplicated_entries: int = 0  # acknowledged by the old master, never on the replica
    unreplicated_records: list[str] = field(default_factory=list)
    lost_unsynced_records: list[str] = field(default_factory=list)  # of those, not in the CRM at the kill
    republished: list[str] = field(default_factory=list)  # records queued again by reconciliation
    api_requests: int = 0
    api_5xx: list[str] = field(default_factory=list)
    transport_errors: int = 0
    records: dict = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    not_synced: list[str] = field(default_factory=list)
    drain_seconds: float = 0.0
    left: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    logs: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(self.problems or self.lost or self.duplicated or self.wrong or self.not_synced or self.api_5xx)


def _record_key(fields: dict) -> str:
    return f"{fields.get('entity')}-{fields.get('id') or fields.get('local_id')}"


def lose_entries(stack: SentinelStack, pool: WorkerPool, options: argparse.Namespace, numbers: Numbers) -> float:
    """Hold replication, pause the workers, let the master take entries the replica never sees, SIGKILL it.

    Returns the wall-clock time of the SIGKILL (ms). The workers are paused so that the
    lost entries are not synced already when the master dies: then only reconciliation
    can bring them back, which is what the run is to show.
    """
    cluster = stack.cluster
    master, replica = cluster.master.client(), cluster.replica.client()
    replicated_last = _last_id(replica)
    cluster.hold_replication()
    for process in pool.live:
        os.kill(process.pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 20
        while len(_entries_after(master, replicated_last)) < options.unreplicated:
            if time.monotonic() > deadline:
                numbers.problems.append("the clients published too little to lose before the kill")
                break
            time.sleep(0.05)
        lost = _entries_after(master, replicated_last)
        numbers.unreplicated_entries = len(lost)
        numbers.unreplicated_records = sorted({_record_key(fields) for _id, fields in lost})
        numbers.lost_unsynced_records = _unsynced(stack.db_path, numbers.unreplicated_records)
        kill_ms = time.time() * 1000
        cluster.kill_master()
    finally:
        for process in pool.live:
            os.kill(process.pid, signal.SIGCONT)
    return kill_ms


def _last_id(client: redis.Redis) -> str:
    last = client.xrevrange(OPERATIONS, count=1)
    return last[0][0] if last else "0"


def _entries_after(client: redis.Redis, after: str) -> list:
    return client.xrange(OPERATIONS, min=f"({after}", count=10000) if after != "0" else client.xrange(OPERATIONS)


def _unsynced(db_path: Path, keys: list[str]) -> list[str]:
    with sqlite3.connect(db_path, timeout=30) as db:
        waiting = {f"{entity}-{local_id}" for entity, local_id in
                   db.execute("SELECT entity, local_id FROM crmbridge_syncrecord WHERE state != 'synced'")}  # fmt: skip
    return [key for key in keys if key in waiting]


def wait_writes(client: redis.Redis, kill_ms: float, *, timeout: float) -> float | None:
    """Wall-clock ms of the first stream entry the new master took after the kill (None: none in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            newer = client.xrange(OPERATIONS, min=str(int(kill_ms) + 1), count=1)
        except redis.RedisError:
            newer = []
        if newer:
            return float(newer[0][0].split("-")[0])
        time.sleep(0.05)
    return None


def republished(client: redis.Redis) -> list[str]:
    entries = client.xrange(OPERATIONS)
    return sorted({_record_key(fields) for _id, fields in entries if fields.get("src") == "reconcile"})


def run(stack: SentinelStack, options: argparse.Namespace) -> Numbers:
    numbers = Numbers()
    started = time.monotonic()
    web, base_url = start_web(stack, workers=2)
    pool = WorkerPool(stack, WORKER_ARGS, WORKER_ENV)
    for _ in range(2):
        pool.start()
    tally = Tally()
    clients = start_clients(
        base_url, users=options.users, orders_per_user=options.orders_per_user, threads=options.clients,
        duration=options.duration, seed=options.seed, tally=tally,
    )  # fmt: skip
    try:
        time.sleep(options.duration * options.kill_at)  # traffic before the failure: pacing, not a check
        old_port = stack.cluster.master_port()
        kill_ms = lose_entries(stack, pool, options, numbers)
        kill_clock = time.monotonic()
        stack.cluster.wait_failover(old_port, timeout=30)
        numbers.failover_seconds = time.monotonic() - kill_clock
        failover_ms = kill_ms + numbers.failover_seconds * 1000
        first = wait_writes(stack.data_client(), kill_ms, timeout=30)
        if first is None:
            numbers.problems.append("no write reached the new master within 30 s")
        else:
            numbers.writes_resumed_after_kill = round((first - kill_ms) / 1000, 2)
            numbers.writes_resumed_after_failover = round(max(0.0, first - failover_ms) / 1000, 2)
    finally:
        for client in clients:
            client.join(options.duration * 3)
    numbers.problems += [f"{c.name} failed: {c.error!r}" for c in clients if c.error]
    client = stack.data_client()
    numbers.drain_seconds, _ = wait_drained(stack.db_path, client, timeout=options.drain_timeout)
    web.terminate()
    numbers.problems += [f"worker {pid} exited by itself with {code}" for pid, code in pool.crashed()]
    stop = pool.stop_all()
    numbers.left = {k: v for k, v in backlog(stack.db_path, client).items() if v}
    numbers.problems += [f"left at the end: {k} = {v}" for k, v in numbers.left.items()]
    numbers.problems += [f"worker {pid} ignored SIGTERM" for pid in stop["stragglers"]]
    findings = Findings()
    check_records(expected_records(stack.env()), stack.sandbox_url, findings)
    numbers.records, numbers.lost, numbers.duplicated = findings.records, findings.lost, findings.duplicated
    numbers.wrong, numbers.not_synced = findings.wrong, findings.not_synced
    numbers.republished = republished(client)
    numbers.api_requests, numbers.api_5xx = tally.requests, tally.api_5xx
    numbers.transport_errors = tally.transport_errors
    numbers.logs = log_anomalies(stack.dir)
    numbers.seconds = round(time.monotonic() - started, 1)
    return numbers


def table(n: Numbers) -> str:
    rows = [
        ("failover (SIGKILL of the master -> sentinels agree on the promoted replica)", f"{n.failover_seconds:.2f} s"),
        ("writes resumed (first new stream entry on the new master) after SIGKILL / after failover",
         f"{n.writes_resumed_after_kill} s / {n.writes_resumed_after_failover} s"),
        ("entries the old master acknowledged, never replicated (records)",
         f"{n.unreplicated_entries} ({len(n.unreplicated_records)})"),
        ("of those records, not in the CRM when the master died", len(n.lost_unsynced_records)),
        ("records published again by reconciliation", f"{len(n.republished)}: {', '.join(n.republished[:12])}"),
        ("API requests / 5xx / transport errors", f"{n.api_requests} / {len(n.api_5xx)} / {n.transport_errors}"),
        ("records checked", f"{n.records.get('deal', 0)} orders, {n.records.get('contact', 0)} users"),
        ("**lost / duplicated / wrong fields**", f"{len(n.lost)} / {len(n.duplicated)} / {len(n.wrong)}"),
        ("time from the end of traffic to a drained queue", f"{n.drain_seconds:.1f} s"),
        ("result", "FAILED: " + "; ".join(n.problems + n.lost + n.duplicated + n.wrong + n.api_5xx)[:400]
         if n.failed else "all invariants held"),
    ]  # fmt: skip
    return "\n".join(["| measure | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)])


def record(n: Numbers, options: argparse.Namespace) -> None:
    header = (
        f"### Sentinel failover, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
        f"Machine: {machine()}\n\n"
        f"`bench/failover.py --users {options.users} --orders-per-user {options.orders_per_user} "
        f"--duration {options.duration:g} --seed {options.seed}`: 1 master, 1 replica, 3 sentinels "
        f"(down-after 1000 ms, failover-timeout 2000 ms), gunicorn 2 processes, 2 workers, "
        f"{options.clients} client threads; {n.seconds:.0f} s in all.\n"
    )
    with RESULTS.open("a") as results:
        results.write("\n" + header + "\n" + table(n) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=12)
    parser.add_argument("--orders-per-user", type=int, default=3)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of client traffic")
    parser.add_argument("--kill-at", type=float, default=0.4, help="when the master dies, as a fraction of it")
    parser.add_argument("--unreplicated", type=int, default=3, help="entries to lose with the master (at least)")
    parser.add_argument("--clients", type=int, default=3, help="API client threads")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--drain-timeout", type=float, default=60.0)
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    parser.add_argument("--keep-logs", type=Path, help="copy every process's log here")
    options = parser.parse_args()
    stack = SentinelStack()
    try:
        stack.start()
        numbers = run(stack, options)
        if options.keep_logs or numbers.failed:
            keep = options.keep_logs or Path(f"/tmp/bitrixsync-failover-logs-{os.getpid()}")
            keep.mkdir(parents=True, exist_ok=True)
            for path in stack.dir.glob("*.log"):
                shutil.copy(path, keep / path.name)
            print(f"logs kept in {keep}", file=sys.stderr)
    finally:
        stack.stop()
    if options.json:
        print(json.dumps({**asdict(numbers), "failed": numbers.failed}, ensure_ascii=False))
    else:
        print(table(numbers))
    if options.record:
        record(numbers, options)
    return 1 if numbers.failed else 0


if __name__ == "__main__":
    sys.exit(main())
