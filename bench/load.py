"""Load at scale on one machine: a steady rate of order creates and edits, then proof every order reached the CRM once.

    .venv/bin/python bench/load.py --duration 20 --rate 5                  # smoke: under a minute, checks everything
    .venv/bin/python bench/load.py                                         # 5 minutes at 20 writes/s
    .venv/bin/python bench/load.py --duration 300 --rate 20 --record       # also append the result to RESULTS.md
    .venv/bin/python bench/load.py --find-limit --steps 20,40,80,120,160,200 --step-duration 30 --record

Arguments: ``--duration`` seconds of traffic (300), ``--rate`` API writes per
second (20), ``--edit-share`` the part of writes that edit an existing order
(0.5), ``--users`` customers registered first (40), ``--web-processes``
gunicorn sync workers (4), ``--workers`` ``run_bitrix_worker`` processes (3),
``--clients`` client threads (64), ``--postgres`` the server on which a
temporary database ``bench_load_<pid>`` is created and dropped
(postgres://postgres@127.0.0.1:5432/postgres). ``--find-limit`` runs the steps
of ``--steps`` (writes/s) for ``--step-duration`` seconds each and stops after
the first whose API p99 exceeds ``--limit-ms`` (250) twice in a row.

What runs, all private to the run: PostgreSQL (a temporary database on the
given server), a redis-server on a free port, the Bitrix24 sandbox
(``manage.py bitrix_sandbox``) at its default rate limit (2 requests/s, burst
50; the workers' own limiter is set to the same), gunicorn with
``--web-processes`` sync workers (as in the Dockerfile), ``--workers``
``run_bitrix_worker`` processes, and the load generator in this process
(``load_traffic``: open loop, see there). The API's rate limits on sign-up and
sign-in are lifted (``THROTTLE_*_RATE=10000000/min``, ``devtools/testing/bench_env.py``):
one address registers the whole pool.

Order of events: register ``--users`` customers (their contacts are synced
before anything is timed), then the traffic, then wait until the queue has
drained (outbox empty, no pending or unread stream entries, every record has
its Bitrix ID). Measured:

* API latency p50/p99 of the writes (client side, send to answer; also from
  the due time, which adds any wait for a free client thread);
* time from save to CRM per order: ``SyncRecord.last_synced_at`` (written by
  the worker right after the portal answered the batch that carried the
  order's latest values) minus ``Order.updated_at`` (the last save). Both are
  database timestamps from one clock. It is an upper bound of when the deal
  had its final values in the sandbox (the write-back comes just after);
* CPU seconds per 1,000 writes (a create or an edit of an order) per role,
  from ``/proc`` (``load_cpu``), from the start of the traffic until drained;
* the load average (1 minute) before, during (mean of the samples) and after.

The end check (``chaos_check``) fails the run loudly (exit 1): every order
and user has exactly one deal/contact (by ``ORIGIN_ID``), its fields are the
mapping of the row's final values and its ID the one written back; no
orphans; every sync record "synced"; no API write failed; no order without
a save-to-CRM time.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chaos import keep_logs, start_web
from chaos_check import BACKLOG_SQL, Findings, check_records, count_rows, expected_records, wait_drained
from load_cpu import CpuMeter, children, load_average
from load_traffic import Traffic, percentile, register_customers, summarize
from publish_overhead import temporary_database
from stack import ROOT, BenchStack
from throughput import machine

RESULTS = ROOT / "bench" / "RESULTS.md"
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"
STARTED = time.monotonic()
SAVE_TO_CRM_SQL = """
SELECT o.id, EXTRACT(EPOCH FROM s.last_synced_at - o.updated_at)
FROM orders_order o LEFT JOIN crmbridge_syncrecord s ON s.entity = 'deal' AND s.local_id = o.id
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of traffic (default 300)")
    parser.add_argument("--rate", type=float, default=20.0, help="API writes per second (default 20)")
    parser.add_argument("--edit-share", type=float, default=0.5, help="part of the writes that are edits (0.5)")
    parser.add_argument("--users", type=int, default=40, help="customers registered before the traffic (40)")
    parser.add_argument("--web-processes", type=int, default=4, help="gunicorn sync workers (4)")
    parser.add_argument("--workers", type=int, default=3, help="run_bitrix_worker processes (3)")
    parser.add_argument("--clients", type=int, default=64, help="client threads of the load generator (64)")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help=f"PostgreSQL server URL ({DEFAULT_POSTGRES})")
    parser.add_argument("--find-limit", action="store_true", help="step the rate up until p99 > --limit-ms")
    parser.add_argument("--steps", type=rates, default=rates("20,40,80,120,160,200"), help="writes/s per step")
    parser.add_argument("--step-duration", type=float, default=30.0, help="seconds per step (30)")
    parser.add_argument("--limit-ms", type=float, default=250.0, help="the p99 a step must stay under (250)")
    parser.add_argument("--drain-timeout", type=float, default=900.0, help="seconds to wait for the queue (900)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--record", action="store_true", help="append the result to bench/RESULTS.md")
    parser.add_argument("--note", default="", help="a line recorded with the result")
    options = parser.parse_args(argv)
    if options.rate <= 0 or options.duration <= 0 or not 0 <= options.edit_share <= 1:
        parser.error("--rate and --duration must be positive, --edit-share between 0 and 1")
    return options


def rates(text: str) -> list[float]:
    """``"20,40,80"`` -> [20.0, 40.0, 80.0]: increasing, positive."""
    values = [float(part) for part in text.split(",") if part.strip()]
    if not values or any(v <= 0 for v in values) or values != sorted(values):
        raise argparse.ArgumentTypeError(f"expected increasing positive rates, got {text!r}")
    return values


# -- the run --------------------------------------------------------------------------------------------


def run(options: argparse.Namespace, stack: BenchStack) -> dict:
    web, base_url = start_web(stack, workers=options.web_processes, LOG_LEVEL="WARNING")
    workers = [stack.start_worker(name=f"worker{i}") for i in range(options.workers)]
    client = redis.Redis(port=stack.redis.port, decode_responses=True)
    say(f"registering {options.users} customers ...")
    tokens = register_customers(base_url, options.users)
    wait_for_contacts(stack.database_url, timeout=120)
    meter = CpuMeter(roles(stack, web, workers, options.postgres)).start()
    traffic = Traffic(base_url, tokens, edit_share=options.edit_share, threads=options.clients, seed=options.seed)
    result = {"load_before": load_average()}
    result["steps"] = find_limit(traffic, options) if options.find_limit else [steady(traffic, options)]
    say("traffic done; waiting for the queue to drain ...")
    check_alive(stack)
    result["drain"], result["left"] = wait_drained(stack.database_url, client, timeout=options.drain_timeout)
    result["cpu"] = meter.stop()
    result["load_during"] = sum(meter.loads) / len(meter.loads) if meter.loads else 0.0
    result["load_after"] = load_average()
    result["writes"] = len(traffic.samples)
    result["orders"] = len(traffic.orders.made)
    result["failed"] = summarize(traffic.samples, 1)["failed"]
    result["save_to_crm"] = save_to_crm(stack.database_url, traffic.orders.edits)
    findings = Findings()
    check_records(expected_records(stack.env()), stack.sandbox_url, findings)
    result["findings"] = findings
    result["sandbox"] = stack.sandbox_stats()
    return result


def wait_for_contacts(database_url: str, *, timeout: float) -> None:
    """Every customer has a contact: the traffic starts on a quiet queue (the outbox's last deletes may lag)."""
    deadline = time.monotonic() + timeout
    query = {"users": BACKLOG_SQL["users without contact"]}
    while count_rows(database_url, query)["users"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"customers without a contact after {timeout:g} s")
        time.sleep(0.2)


def check_alive(stack: BenchStack) -> None:
    """Fail now, not after the drain timeout, when a process of the stack died (seen: the private
    redis-server SIGKILLed from outside while other agents' tests ran; the drain then never ends)."""
    processes = [*stack.processes, stack.redis.process]
    dead = [f"{' '.join(p.args[1:3]) if isinstance(p.args, list) else p.args} exited {p.returncode}"
            for p in processes if p is not None and p.poll() is not None]  # fmt: skip
    if dead:
        raise RuntimeError("a process of the bench died during the traffic: " + "; ".join(dead))


def say(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f} s] {text}", flush=True)


def roles(stack: BenchStack, web: subprocess.Popen, workers: list[subprocess.Popen], admin_url: str) -> dict:
    """Each role's process IDs. PostgreSQL's are listed over one connection to the server's admin
    database (``--postgres``), which is neither counted nor reconnected at each sample."""
    database = stack.database_url.rsplit("/", 1)[1]
    admin = psycopg.connect(admin_url, autocommit=True)  # closed with the process: the run ends soon after

    def postgres() -> list[int]:
        rows = admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)).fetchall()
        return [pid for (pid,) in rows]

    return {
        "web (gunicorn)": lambda: [web.pid, *children(web.pid)],
        "workers": lambda: [w.pid for w in workers],
        "redis": lambda: [stack.redis.process.pid],
        "postgres (this database's backends)": postgres,
        "sandbox": lambda: [stack.sandbox.pid],
        "load generator (this process)": lambda: [os.getpid()],
    }


def steady(traffic: Traffic, options: argparse.Namespace) -> dict:
    say(f"sending {options.rate:g} writes/s for {options.duration:g} s ...")
    started = time.perf_counter()
    samples = traffic.run(rate=options.rate, duration=options.duration)
    return {"target": options.rate, **summarize(samples, time.perf_counter() - started)}


def find_limit(traffic: Traffic, options: argparse.Namespace) -> list[dict]:
    """Steps of increasing rate until one breaks the limit twice in a row (both runs are kept: they show the break).

    A step that breaks is run once more before the search ends: on a machine
    shared with other work, a neighbour's burst can break one 30 s step at a
    rate the system holds (seen at 5 writes/s with a load average of 10). A
    rate holds when its last run held (``held_rates``).
    """
    steps = []
    for rate in options.steps:
        for attempt in (1, 2):
            steps.append(step(traffic, rate, options.step_duration, attempt=attempt))
            if held(steps[-1], options.limit_ms):
                break
        else:
            return steps
    return steps


def step(traffic: Traffic, rate: float, seconds: float, *, attempt: int) -> dict:
    say(f"step: {rate:g} writes/s for {seconds:g} s{' (again)' if attempt > 1 else ''} ...")
    started = time.perf_counter()
    samples = traffic.run(rate=rate, duration=seconds)
    result = {"target": rate, "attempt": attempt, **summarize(samples, time.perf_counter() - started)}
    say(f"  p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms, {result['rate']:.1f} writes/s")
    return result


def held_rates(steps: list[dict], limit_ms: float) -> tuple[float | None, float | None]:
    """(the highest rate whose last run held, the first rate that broke twice) of a search."""
    last = {s["target"]: held(s, limit_ms) for s in steps}  # later runs of a rate overwrite earlier ones
    good = [rate for rate, ok in last.items() if ok]
    broke = [rate for rate, ok in last.items() if not ok]
    return (max(good) if good else None), (min(broke) if broke else None)


def held(step: dict, limit_ms: float) -> bool:
    """A step held: p99 under the limit, nothing failed, and the generator kept the rate (within 5%)."""
    return step["p99"] <= limit_ms and not step["failed"] and step["rate"] >= 0.95 * step["target"]


def save_to_crm(database_url: str, edits: Counter) -> dict:
    """Percentiles of (synced - last save) in seconds; also for orders edited at most twice.

    Orders edited often wait longer by design: the worker syncs one record at
    most once per ``BITRIX_WORKER_RECORD_INTERVAL``, growing to ``_MAX`` (10 s)
    while it keeps changing (coalescing, issue 13). Early in a run few orders
    exist, so they take most of the edits.
    """
    with psycopg.connect(database_url) as db:
        rows = db.execute(SAVE_TO_CRM_SQL).fetchall()
    timed = {pk: float(s) for pk, s in rows if s is not None and s >= 0}
    few = [s for pk, s in timed.items() if edits[pk] <= 2]
    seconds = list(timed.values())
    return {"p50": percentile(seconds, 50), "p99": percentile(seconds, 99), "max": max(seconds, default=0.0),
            "few_p99": percentile(few, 99), "few": len(few), "most_edits": max(edits.values(), default=0),
            "missing": [pk for pk, _ in rows if pk not in timed]}  # fmt: skip


# -- the report --------------------------------------------------------------------------------------------


def problems(result: dict) -> list[str]:
    f = result["findings"]
    examples = [*f.lost, *f.duplicated, *f.wrong, *f.orphans, *f.not_synced][:10]
    found = [f"invariant broken: {name}" for name in f.broken] + [f"  e.g. {text}" for text in examples]
    found += [f"{len(result['failed'])} API writes failed: {result['failed'][:5]}"] if result["failed"] else []
    found += [f"left at the end: {name} = {n}" for name, n in result["left"].items() if n]
    missing = result["save_to_crm"]["missing"]
    found += [f"{len(missing)} orders without a sync after their last save: {missing[:10]}"] if missing else []
    return found


def report(options: argparse.Namespace, result: dict, command: str) -> str:
    lines = [
        f"### Load at scale, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC{' (rate search)' if options.find_limit else ''}",
        f"Machine: {machine()}. Commit {commit()}.",
        "",
        f"`{command}`: gunicorn {options.web_processes} sync workers, {options.workers} run_bitrix_worker, "
        f"PostgreSQL, private redis-server, sandbox at its default limit (2 requests/s, burst 50), "
        f"{options.users} customers, {options.edit_share:.0%} of the writes are edits, "
        f"{options.clients} client threads.",
        "Load average (1 min): before {:.2f}, mean during the run {:.2f}, after {:.2f}.".format(
            result["load_before"][0], result["load_during"], result["load_after"][0]
        ),
        *([f"\n{options.note}"] if options.note else []),
        "",
        "| target writes/s | achieved | creates | edits | API p50 ms | API p99 ms | p99 from due time ms "
        "| late sends | failed |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(step_row(s) for s in result["steps"]),
        "",
        *summary_lines(options, result),
    ]
    return "\n".join(lines) + "\n"


def step_row(s: dict) -> str:
    again = " (again)" if s.get("attempt", 1) > 1 else ""
    return (
        f"| {s['target']:g}{again} | {s['rate']:.1f} | {s['creates']} | {s['edits']} | {s['p50']:.1f} "
        f"| {s['p99']:.1f} | {s['p99_from_due']:.1f} | {s['late_sends']} | {len(s['failed'])} |"
    )


def summary_lines(options: argparse.Namespace, result: dict) -> list[str]:
    crm, cpu, per = result["save_to_crm"], result["cpu"], 1000 / max(result["writes"], 1)
    portal = result["sandbox"]
    methods = ", ".join(f"{name} {n}" for name, n in sorted(portal["commands_by_method"].items()))
    findings, trouble = result["findings"], problems(result)
    lines = [
        f"- Save to CRM (last save -> synced write-back), {result['orders']} orders: p50 {crm['p50']:.2f} s, "
        f"p99 {crm['p99']:.2f} s, max {crm['max']:.2f} s (p99 of the {crm['few']} orders edited at most twice: "
        f"{crm['few_p99']:.2f} s; most edits of one order: {crm['most_edits']}); "
        f"queue drained {result['drain']:.1f} s after the traffic.",
        f"- CPU seconds per 1,000 writes: {sum(cpu.values()) * per:.1f} in all ("
        + ", ".join(f"{role} {seconds * per:.1f}" for role, seconds in cpu.items())
        + ").",
        f"- Portal (the whole run, registration included): {portal['requests']} requests carrying "
        f"{portal['operations']} commands ({methods}), {portal['rate_limited']} answered 503 by its rate limit.",
        f"- Exactly once: {findings.records.get('deal', 0)} orders, {findings.records.get('contact', 0)} users; "
        f"lost {len(findings.lost)}, duplicated {len(findings.duplicated)}, wrong fields {len(findings.wrong)}, "
        f"orphans {len(findings.orphans)}, not synced {len(findings.not_synced)}.",
    ]
    if options.find_limit:
        good, broke = held_rates(result["steps"], options.limit_ms)
        lines.append(f"- Highest rate that held (p99 <= {options.limit_ms:g} ms, no failures, rate kept; a step "
                     f"that breaks is run again): {f'{good:g}' if good else 'none'} writes/s; "
                     + (f"{broke:g} writes/s broke twice." if broke else "no step broke it."))  # fmt: skip
    lines.append("- Result: " + ("FAILED: " + "; ".join(trouble) if trouble else "every check held."))
    return lines


def commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout  # fmt: skip
    return head.strip() + (" (with uncommitted changes)" if dirty.strip() else "")


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    command = "bench/load.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    workdir = Path(tempfile.mkdtemp(prefix="bitrixsync-load-"))
    with temporary_database(workdir, options.postgres, prefix="bench_load") as (database_url, _):
        say("migrating a temporary PostgreSQL database, starting Redis and the sandbox ...")
        stack = BenchStack(rate=2.0, burst=50, database_url=database_url).start()
        try:
            result = run(options, stack)
            trouble = problems(result)
            if trouble:  # the logs go with the stack's directory: keep them for the post-mortem
                keep_logs(stack, workdir / "logs")
        finally:
            stack.stop()
    text = report(options, result, command)
    print("\n" + text)
    if options.record:
        with RESULTS.open("a") as results:
            results.write("\n" + text)
    if trouble:
        print(f"LOAD BENCH FAILED (logs in {workdir / 'logs'}):\n  " + "\n  ".join(trouble), file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if trouble else 0


if __name__ == "__main__":
    sys.exit(main())
