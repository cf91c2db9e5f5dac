"""Throughput benchmark: the worker at the portal's rate limit, and without one.

    .venv/bin/python bench/throughput.py            # every scenario (about 6 minutes)
    .venv/bin/python bench/throughput.py --quick    # smaller sizes, a quick look
    .venv/bin/python bench/throughput.py --record   # also append the table to bench/RESULTS.md

Each scenario gets a fresh private stack (redis-server, SQLite, sandbox
process), seeds N users with one order each (2N operations: N contacts and N
deals) and starts the workers, then waits until every ID is written back.

Since issue 20 a new deal carries its product rows (``crm.deal.productrows.set``
in the same batch as its ``add``), and a new contact is first looked for among
the portal's customers (``crm.duplicate.findbycomm``, 20 values per command, by
e-mail and, for those not found, by phone). Every seeded user has both and none
exists in the portal, so the work is at least 3N write commands plus
L = 2 x ceil(N / 20) lookup commands: the "share of a batched lookup" that issue
20 budgets per new order. The ceiling of a limited run: R = ceil((3N + L) / 50)
requests (with one request per operation: R = 2N + L, the rows riding with their
deal); a leaky bucket of size B draining at r/s accepts them in
T = max(0, (R - B) / r) seconds, so at most 2N / T operations per second are
possible. The "writes only" column leaves L out, as the table did before the
lookups existed; the "no lookups" scenario (BITRIX_CONTACT_MATCH=off) is
measured against that one. (The worker's start-up checks of the portal are two
more requests, not counted in R.)
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import ROOT, BenchStack

RESULTS = ROOT / "bench" / "RESULTS.md"


@dataclass
class Row:
    scenario: str
    n: int
    workers: int
    seconds: float
    ops_per_second: float
    ceiling: float | None
    writes_ceiling: float | None  # the ceiling without the lookup commands
    duplicates: int
    lost: int
    rate_limited: int
    note: str = ""

    @property
    def ratio(self) -> str:
        return f"{self.ops_per_second / self.ceiling:.1%}" if self.ceiling else "-"

    @property
    def writes_ratio(self) -> str:
        return f"{self.ops_per_second / self.writes_ceiling:.1%}" if self.writes_ceiling else "-"


COMMANDS_PER_PAIR = 3  # a contact, a deal, the deal's product rows
VALUES_PER_LOOKUP = 20  # crm.duplicate.findbycomm takes at most 20 e-mails or phones


def lookup_commands(users: int) -> int:
    """The fewest findbycomm commands that look ``users`` up by e-mail, then by phone."""
    return 2 * math.ceil(users / VALUES_PER_LOOKUP)


def ceiling(ops: int, rate: float, burst: int, per_request: int = 50, *, lookups: bool = True) -> float | None:
    """``ops`` records (half contacts, half deals) at the portal's limit; see the module docstring."""
    pairs = ops // 2
    extra = lookup_commands(pairs) if lookups else 0
    commands = pairs * COMMANDS_PER_PAIR + extra
    requests_needed = ops + extra if per_request == 1 else math.ceil(commands / per_request)
    seconds = max(0.0, (requests_needed - burst) / rate)
    return ops / seconds if seconds else None


def seed(stack: BenchStack, n: int) -> None:
    subprocess.run([sys.executable, str(ROOT / "bench" / "seed.py"), str(n)], env=stack.env(), check=True)


def run_sync(name: str, *, n: int, rate: float | None, burst: int | None, workers: int = 1,
             per_request: int = 50, match: bool = True, timeout: float = 900) -> Row:  # fmt: skip
    """``match=False``: BITRIX_CONTACT_MATCH=off, no lookups; measured against the writes-only ceiling."""
    stack = BenchStack(rate=rate, burst=burst).start()
    try:
        seed(stack, n)
        args = ["--commands-per-request", str(per_request)]
        for i in range(workers):
            stack.start_worker(*args, name=f"worker{i}", **({} if match else {"BITRIX_CONTACT_MATCH": "off"}))
        # The clock starts when a worker is ready (its first heartbeat), not at process
        # start: Python and Django take ~0.7 s to import, which is not the portal's limit.
        _wait(lambda: stack.redis.client().zcard("bitrix:workers") > 0, step=0.01)
        started = time.monotonic()
        stack.wait_synced(n, n, timeout=timeout)
        seconds = time.monotonic() - started
        stats = stack.sandbox_stats()
        return Row(
            scenario=name, n=n, workers=workers, seconds=seconds, ops_per_second=2 * n / seconds,
            ceiling=ceiling(2 * n, rate, burst, per_request, lookups=match) if rate else None,
            writes_ceiling=ceiling(2 * n, rate, burst, per_request, lookups=False) if rate else None,
            duplicates=len(stats["duplicates"]["deal"]) + len(stats["duplicates"]["contact"]),
            lost=(n - stats["deals"]) + (n - stats["contacts"]), rate_limited=stats["rate_limited"],
        )  # fmt: skip
    finally:
        stack.stop()


def run_latency(samples: int) -> tuple[float, float]:
    """API call -> deal received by the sandbox, with an idle queue: (p50, p99) in ms."""
    stack = BenchStack(rate=None, burst=None).start()
    try:
        port = _free_port()
        stack.spawn("runserver", f"127.0.0.1:{port}", "--noreload", log="web.log")
        stack.start_worker("--poll-interval", "1.0", name="worker")
        token = _make_user(stack)
        _wait_http(f"http://127.0.0.1:{port}/api/schema")
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        body = {"service_id": "cnc-milling", "quantity": 1}
        session.post(f"http://127.0.0.1:{port}/orders", json=body, timeout=10)  # warm-up, creates the contact
        _wait(lambda: stack.sandbox_stats()["deals"] == 1)
        latencies = []
        for i in range(samples):
            time.sleep(0.2)  # idle queue: the worker is blocked in XREADGROUP
            started = time.perf_counter()
            session.post(f"http://127.0.0.1:{port}/orders", json=body, timeout=10).raise_for_status()
            expected = i + 2
            _wait(lambda: _deals(stack) == expected, step=0.001)  # noqa: B023 - called before the loop moves on
            latencies.append((time.perf_counter() - started) * 1000)
        latencies.sort()
        return statistics.median(latencies), latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    finally:
        stack.stop()


def run_memory(n: int) -> tuple[float, float]:
    """Worker RSS (MB) shortly after start and after syncing 2n operations."""
    stack = BenchStack(rate=None, burst=None).start()
    try:
        seed(stack, 50)
        worker = stack.start_worker(name="worker")
        stack.wait_synced(50, 50, timeout=60)
        before = _rss_mb(worker.pid)
        subprocess.run([sys.executable, str(ROOT / "bench" / "seed.py"), str(n), "50"], env=stack.env(), check=True)
        stack.wait_synced(n + 50, n + 50, timeout=1800)
        return before, _rss_mb(worker.pid)
    finally:
        stack.stop()


def _deals(stack: BenchStack) -> int:
    return requests.get(f"{stack.sandbox_url}/_sandbox/stats", timeout=5).json()["deals"]


def _make_user(stack: BenchStack) -> str:
    code = (
        "from accounts.models import User; from accounts.tokens import token_for;"
        "u = User.objects.create_user(username='lat', email='lat@example.com', password='Lat-pass-123');"
        "print(token_for(u))"
    )
    out = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", code],
        env=stack.env(), check=True, capture_output=True, text=True,
    )  # fmt: skip
    return out.stdout.strip().splitlines()[-1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _free_port() -> int:
    from devtools.testing.ports import free_port

    return free_port()


def _wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise TimeoutError(url)


def _wait(condition, timeout: float = 30, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(step)


def table(rows: list[Row]) -> str:
    lines = [
        "| scenario | N orders (+N users) | workers | seconds | ops/s | ceiling ops/s | of ceiling "
        "| of writes-only ceiling | 503s | duplicates | lost |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ceiling_text = f"{r.ceiling:.1f}" if r.ceiling else "-"
        lines.append(
            f"| {r.scenario} | {r.n} | {r.workers} | {r.seconds:.1f} | {r.ops_per_second:.1f} | {ceiling_text} "
            f"| {r.ratio} | {r.writes_ratio} | {r.rate_limited} | {r.duplicates} | {r.lost} |"
        )
    return "\n".join(lines)


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    import os

    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (about 1 minute)")
    parser.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    parser.add_argument("--memory-ops", type=int, default=100_000, help="operations for the memory run")
    parser.add_argument("--only", help="comma-separated scenario names to run")
    options = parser.parse_args()
    q = options.quick
    scenarios = {
        "standard 2/s burst 50": lambda: run_sync("standard 2/s burst 50", n=300 if q else 3000, rate=2, burst=50),
        "enterprise 5/s burst 250": lambda: run_sync(
            "enterprise 5/s burst 250", n=1000 if q else 10000, rate=5, burst=250
        ),
        "fast 20/s burst 20": lambda: run_sync("fast 20/s burst 20", n=500 if q else 10000, rate=20, burst=20),
        "no lookups, fast 20/s burst 20": lambda: run_sync(
            "no lookups, fast 20/s burst 20", n=500 if q else 10000, rate=20, burst=20, match=False
        ),
        "one request per operation, 20/s burst 20": lambda: run_sync(
            "one request per operation, 20/s burst 20", n=50 if q else 200, rate=20, burst=20, per_request=1
        ),
        "no limit, 1 worker": lambda: run_sync("no limit, 1 worker", n=2000 if q else 10000, rate=None, burst=None),
        "no limit, 2 workers": lambda: run_sync(
            "no limit, 2 workers", n=2000 if q else 10000, rate=None, burst=None, workers=2
        ),
    }
    only = set(options.only.split(",")) if options.only else None
    rows = []
    for name, run in scenarios.items():
        if only and not any(o in name for o in only):
            continue
        print(f"running: {name} ...", flush=True)
        rows.append(run())
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    extra = []
    if not only or "latency" in only:
        p50, p99 = run_latency(20 if q else 100)
        extra.append(
            f"- End-to-end latency, API call -> deal in the sandbox, idle queue: p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        )
        print(extra[-1], flush=True)
    if not only or "memory" in only:
        ops = (options.memory_ops // 10) if q else options.memory_ops
        before, after = run_memory(ops // 2)
        extra.append(f"- Worker memory (RSS): {before:.1f} MB at start, {after:.1f} MB after {ops} operations "
                     f"(growth {after - before:+.1f} MB)")  # fmt: skip
        print(extra[-1], flush=True)
    report = "\n".join(
        [f"### Throughput, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC{' (quick)' if q else ''}", f"Machine: {machine()}",
         "", table(rows), "", *extra, ""]
    )  # fmt: skip
    print("\n" + report)
    if options.record:
        with RESULTS.open("a") as f:
            f.write("\n" + report)


if __name__ == "__main__":
    main()
