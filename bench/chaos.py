"""Chaos run: the whole system under faults, then proof that nothing was lost or duplicated.

    .venv/bin/python bench/chaos.py                 # default size, about 3.5 minutes
    .venv/bin/python bench/chaos.py --record        # also append the table to bench/RESULTS.md
    .venv/bin/python bench/chaos.py --users 10 --orders-per-user 2 --duration 40   # a quick look

What runs, all private to the run (``bench/stack.py``): a redis-server with
AOF (``appendfsync always``) on a free port, a temporary SQLite database, the
Bitrix sandbox, the web app under gunicorn (3 sync workers, as in the
Dockerfile) and 3 ``run_bitrix_worker`` processes with a short takeover time
(``--claim-idle 3``), short retries and a 2 s Bitrix read timeout.

What happens meanwhile (``chaos_clients``, ``chaos_faults``): client threads
register users, place orders and change orders and profiles through the HTTP
API, while one scheduler SIGKILLs workers (and starts new ones) and web
processes (once in each round leaving two live workers alone for 6 s),
restarts Redis, makes it unreachable (stopped, or hung with SIGSTOP),
flushes it (FLUSHALL: the queue is lost; reconciliation must bring every
record back) and XADDs malformed messages (one not even UTF-8, ids like "²"), and
another opens fault windows in the sandbox (500, 503 ``QUERY_LIMIT_EXCEEDED``,
timeouts, HTML bodies, a mix, an expired webhook).

At the end the faults stop, the queue must drain (outbox empty, no pending or
unread stream entries, every order and user has its Bitrix ID) within
``--drain-timeout``, the workers get SIGTERM and must exit 0, and
``chaos_check`` compares every order and user with its one deal or contact.
The exit code is 1 when an invariant is broken. Logs of every process are
kept in a directory printed at the end when the run fails (or with
``--keep-logs``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chaos_check import (
    Findings,
    backlog,
    check_dead_letters,
    check_records,
    expected_records,
    log_anomalies,
    wait_drained,
)
from chaos_clients import Tally, start_clients
from chaos_faults import FaultLog, RedisFaults, SandboxChaos, SystemChaos, WorkerPool
from stack import ROOT, BenchStack
from throughput import machine

from devtools.testing.ports import free_port, wait_for_port

RESULTS = ROOT / "bench" / "RESULTS.md"
READ_TIMEOUT = 2.0  # the workers' Bitrix read timeout
SANDBOX_TIMEOUT = 3.0  # a "timeout" fault holds the answer longer than that
WORKER_ARGS = ["--poll-interval", "0.5", "--claim-idle", "3", "--retry-base", "0.2", "--retry-max", "3",
               "--pause-probe", "2", "--max-retries", "25"]  # fmt: skip
# Reconciliation after a flush: records waiting 15 s with no message are queued again, checked every 3 s.
WORKER_ENV = {"BITRIX_HTTP_READ_TIMEOUT": str(READ_TIMEOUT), "BITRIX_WORKER_HEARTBEAT": "1", "LOG_LEVEL": "INFO",
              "BITRIX_RECONCILE_AFTER": "15", "BITRIX_RECONCILE_INTERVAL": "3"}  # fmt: skip


@dataclass
class Outcome:
    options: argparse.Namespace
    tally: Tally
    faults: FaultLog
    findings: Findings
    sandbox_faults: dict
    drain_seconds: float
    left: dict[str, int]
    stop: dict
    crashed: list[tuple[int, int]]
    logs: dict[str, int]
    problems: list[str]

    @property
    def failed(self) -> bool:
        return bool(self.problems or self.findings.broken)


def start_web(stack: BenchStack, *, workers: int = 3, **env: str) -> tuple[subprocess.Popen, str]:
    """gunicorn with ``workers`` sync worker processes (the Dockerfile runs 3) on a free port; ``env`` overrides."""
    port = free_port()
    log = open(stack.dir / "web.log", "ab")  # noqa: SIM115 - lives as long as the process
    command = [sys.executable, "-m", "gunicorn", "bitrixsync.wsgi:application", "--bind", f"127.0.0.1:{port}",
               "--workers", str(workers), "--timeout", "60"]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=stack.env(**{"LOG_LEVEL": "INFO", **env}), stdout=log,
                               stderr=subprocess.STDOUT)  # fmt: skip
    stack.processes.append(process)
    wait_for_port(port, timeout=30)
    return process, f"http://127.0.0.1:{port}"


def run(stack: BenchStack, options: argparse.Namespace) -> Outcome:
    web, base_url = start_web(stack)
    pool = WorkerPool(stack, WORKER_ARGS, WORKER_ENV)
    for _ in range(options.workers):
        pool.start()
    tally, log = Tally(), FaultLog()
    problems = drive(stack, pool, web.pid, base_url, tally, log, options)
    crashed = pool.crashed()
    print("faults stopped; waiting for the queue to drain ...", flush=True)
    # Dead letters may hold any bytes (see chaos_faults.MALFORMED): never fail to read them.
    client = redis.Redis(port=stack.redis.port, decode_responses=True, encoding_errors="backslashreplace")
    drain_seconds, left = wait_drained(stack.db_path, client, timeout=options.drain_timeout)
    web.terminate()  # nothing new from now on
    stop = pool.stop_all()
    left = backlog(stack.db_path, client)  # after the workers are gone: what they left behind
    findings = Findings()
    check_records(expected_records(stack.env()), stack.sandbox_url, findings)
    check_dead_letters(client, log.injected, findings)
    sandbox_faults = stack.sandbox_stats().get("faults", {})
    problems += _process_problems(crashed, stop, left)
    logs = log_anomalies(stack.dir)
    return Outcome(options, tally, log, findings, sandbox_faults, drain_seconds, left, stop, crashed, logs, problems)


def drive(stack: BenchStack, pool: WorkerPool, web_pid: int, base_url: str, tally: Tally, log: FaultLog,
          options: argparse.Namespace) -> list[str]:  # fmt: skip
    """Clients and fault schedulers until the clients are done; the faults always end healed."""
    schedulers = [
        SystemChaos(pool, web_pid, RedisFaults(stack), log, seed=options.seed),
        SandboxChaos(stack.sandbox_url, log, seed=options.seed + 1, timeout_seconds=SANDBOX_TIMEOUT),
    ]
    clients = []
    try:
        for scheduler in schedulers:
            scheduler.start()
        clients = start_clients(
            base_url, users=options.users, orders_per_user=options.orders_per_user, threads=options.clients,
            duration=options.duration, seed=options.seed, tally=tally,
        )  # fmt: skip
        print(f"driving {options.users} users from {options.clients} threads for ~{options.duration:.0f}s ...",
              flush=True)  # fmt: skip
        for client in clients:
            client.join(options.duration * 3)
    finally:
        for thread in [*clients, *schedulers]:
            thread.stop()
        for scheduler in schedulers:
            scheduler.join(60)
    threads = [*clients, *schedulers]
    problems = [f"{t.name} failed: {t.error!r}" for t in threads if t.error]
    problems += [f"{t.name} did not finish" for t in threads if t.is_alive()]
    return problems


def _process_problems(crashed: list, stop: dict, left: dict[str, int]) -> list[str]:
    problems = [f"worker {pid} exited by itself with code {code}" for pid, code in crashed]
    problems += [f"worker {pid} ignored SIGTERM and was killed" for pid in stop["stragglers"]]
    problems += [f"worker {pid} exited with {code} after SIGTERM" for pid, code in stop["exit_codes"].items()
                 if code != 0 and pid not in stop["stragglers"]]  # fmt: skip
    problems += [f"left at the end: {name} = {n}" for name, n in left.items() if n]
    return problems


# -- report ---------------------------------------------------------------------------------------------


def table(o: Outcome) -> str:
    f, t, c = o.findings, o.tally, o.faults.counts
    sent = ", ".join(f"{k} {v}" for k, v in sorted(t.sent.items()))
    sandbox = ", ".join(f"{k} {v}" for k, v in sorted(o.sandbox_faults.items())) or "none"
    windows = ", ".join(f"{k.removeprefix('sandbox_')} {c[k]}" for k in sorted(c) if k.startswith("sandbox_"))
    rows = [
        ("records checked", f"{f.records.get('deal', 0)} orders, {f.records.get('contact', 0)} users"),
        ("API operations sent (confirmed)", f"{sum(t.sent.values())} ({sent})"),
        ("API requests / transport errors / ambiguous creates",
         f"{t.requests} / {t.transport_errors} / {t.ambiguous_creates}"),
        ("API 5xx answers", len(t.api_5xx)),
        ("workers SIGKILLed (and replaced)", c["kill_worker"]),
        ("workers SIGKILLed with two live ones left (6 s before a replacement)", c["kill_worker_two_live"]),
        ("Redis flushes (FLUSHALL: streams, groups, dead letters gone)", c["redis_flush"]),
        ("web processes SIGKILLed (gunicorn replaces them)", c["kill_web"]),
        ("Redis restarts (SIGKILL, AOF) / outages (stopped) / hangs (SIGSTOP)",
         f"{c['redis_restart']} / {c['redis_down']} / {c['redis_hang']}"),
        ("sandbox fault windows", windows),
        ("expired-webhook windows", c["expired_webhook"]),
        ("sandbox faults answered", sandbox),
        ("malformed messages injected (dead letters wiped by a flush)", f"{c['malformed']} ({o.faults.forgotten})"),
        ("**lost**", len(f.lost)),
        ("**duplicated**", len(f.duplicated)),
        ("**wrong fields**", len(f.wrong)),
        ("orphan deals/contacts", len(f.orphans)),
        ("sync records not 'synced'", len(f.not_synced)),
        ("dead-lettered: injected / other", f"{f.dead_injected} / {len(f.dead_other)}"),
        ("left pending at the end", sum(o.left.values())),
        ("workers left running / non-zero exits", f"{len(o.stop['stragglers'])} / "
         f"{sum(1 for code in o.stop['exit_codes'].values() if code)}"),
        ("time from the last fault to a drained queue", f"{o.drain_seconds:.1f} s"),
        ("errors in the logs", ", ".join(f"{k} {v}" for k, v in o.logs.items())),
        ("result", "FAILED: " + "; ".join(f.broken + o.problems) if o.failed else "all invariants held"),
    ]  # fmt: skip
    return "\n".join(["| measure | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)])


def details(o: Outcome) -> str:
    f, t = o.findings, o.tally
    sections = [("API 5xx", t.api_5xx), ("unexpected API 4xx", t.unexpected_4xx), ("lost", f.lost),
                ("duplicated", f.duplicated), ("wrong fields", f.wrong), ("orphans", f.orphans),
                ("sync records not synced", f.not_synced), ("dead letters not injected", f.dead_other),
                ("injected messages not dead as expected", f.injected_missing), ("problems", o.problems),
                ("fault timeline", o.faults.events)]  # fmt: skip
    lines = []
    for title, items in sections:
        if items:
            lines.append(f"{title} ({len(items)}):")
            lines += [f"  {item}" for item in items[:40]]
            lines += [f"  ... and {len(items) - 40} more"] if len(items) > 40 else []
    return "\n".join(lines)


def record(o: Outcome) -> None:
    opts = o.options
    header = (
        f"### Chaos, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
        f"Machine: {machine()}\n\n"
        f"`bench/chaos.py --users {opts.users} --orders-per-user {opts.orders_per_user} --duration {opts.duration:g} "
        f"--seed {opts.seed}`: {opts.workers} workers, {opts.clients} client threads, Redis AOF fsync always, "
        f"worker read timeout {READ_TIMEOUT:g} s, sandbox timeouts {SANDBOX_TIMEOUT:g} s.\n"
        + (f"\n{opts.note}\n" if opts.note else "")
    )
    with RESULTS.open("a") as results:
        results.write("\n" + header + "\n" + table(o) + "\n")


def keep_logs(stack: BenchStack, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for path in stack.dir.glob("*.log"):
        shutil.copy(path, target / path.name)
    if (stack.redis.dir / "redis.log").exists():
        shutil.copy(stack.redis.dir / "redis.log", target / "redis.log")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=60)
    parser.add_argument("--orders-per-user", type=int, default=4)
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of traffic and faults")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4, help="API client threads")
    parser.add_argument("--drain-timeout", type=float, default=180.0)
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    parser.add_argument("--keep-logs", type=Path, help="copy every process's log here")
    parser.add_argument("--note", default="", help="a line recorded with the table (what this run is about)")
    options = parser.parse_args()
    started = time.monotonic()
    stack = BenchStack(rate=None, burst=None, appendonly=True).start()
    try:
        outcome = run(stack, options)
        print(f"\nchaos run finished in {time.monotonic() - started:.0f} s\n")
        print(table(outcome))
        print("\n" + details(outcome))
        logs = options.keep_logs
        if logs is None and outcome.failed:
            logs = Path(tempfile.mkdtemp(prefix="bitrixsync-chaos-logs-"))
        if logs:
            keep_logs(stack, logs)
            print(f"\nlogs kept in {logs}")
        if options.record:
            record(outcome)
    finally:
        stack.stop()
    return 1 if outcome.failed else 0


if __name__ == "__main__":
    sys.exit(main())
