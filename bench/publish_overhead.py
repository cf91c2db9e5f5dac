"""What publishing costs an API request: POST /orders with sync enabled vs disabled, same run.

Two gunicorn servers (one sync worker each) share one temporary database and a
private redis-server: one runs with ``BITRIX_ENABLED=true``, the other with
``false``. Requests alternate between them in A B B A blocks so that drift and
a neighbour's load (disk cache, CPU frequency, the growing table) hit both
alike. Each request is timed on the client, over real HTTP. A second phase
(``--saturate``) keeps each server's one worker busy with 4 concurrent
clients: orders per second count all the work sync adds, including what
happens after the response. Nothing outside the temporary directory
and the private Redis is touched.

    python bench/publish_overhead.py --orders 500
    python bench/publish_overhead.py --orders 500 --record bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.testing.bench_env import BENCH_ENV  # noqa: E402
from devtools.testing.ports import free_port, wait_for_port  # noqa: E402
from devtools.testing.redis_server import PrivateRedis  # noqa: E402

TARGET_PERCENT = 15.0
ORDER = {"service_id": "cnc-milling", "quantity": 3, "material": "aluminium", "comment": "bench"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=500, help="timed orders per configuration (default 500)")
    parser.add_argument("--warmup", type=int, default=30, help="untimed orders per configuration first")
    parser.add_argument(
        "--block",
        type=int,
        default=10,
        help="consecutive requests to one server in the ABBA interleaving (default 10; 1 lets a server's "
        "after-response publish overlap the other server's request, which flatters sync on)",
    )
    parser.add_argument(
        "--saturate",
        type=int,
        default=400,
        help="orders per configuration sent by 4 concurrent clients, for the worker's own cost (0: skip)",
    )
    parser.add_argument("--record", type=Path, help="append the result to this markdown file (bench/RESULTS.md)")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="a PostgreSQL server to use instead of SQLite, e.g. postgres://postgres@127.0.0.1:5432/postgres; "
        "a temporary database is created on it and dropped afterwards",
    )
    return parser.parse_args()


def manage(env: dict, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout


def prepare_database(env: dict) -> str:
    """Migrate the temporary database and return an API token for a fresh user."""
    manage(env, "migrate", "--noinput")
    code = (
        "from accounts.models import User; from accounts.tokens import token_for; "
        "u = User.objects.create_user('bench', 'bench@example.com', 'Bench-pass-123'); print(token_for(u))"
    )
    return manage({**env, "BITRIX_ENABLED": "false"}, "shell", "--no-imports", "-c", code).strip()


def start_server(env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "bitrixsync.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", "1", "--worker-class", "sync",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    wait_for_port(port, timeout=30)
    return process, f"http://127.0.0.1:{port}"


def post_order(session: requests.Session, base_url: str) -> float:
    started = time.perf_counter()
    response = session.post(f"{base_url}/orders", json=ORDER, timeout=30)
    elapsed = time.perf_counter() - started
    if response.status_code != 201:
        raise SystemExit(f"POST {base_url}/orders answered {response.status_code}: {response.text[:300]}")
    return elapsed


def session_for(token: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def warm_up(urls: dict[str, str], token: str, *, orders: int) -> None:
    session = session_for(token)
    for url in urls.values():
        for _ in range(orders):
            post_order(session, url)


def run(urls: dict[str, str], token: str, *, orders: int, block: int) -> dict[str, list[float]]:
    """Timed requests per configuration, interleaved A B B A A B B A ..."""
    session = session_for(token)
    timings: dict[str, list[float]] = {name: [] for name in urls}
    names = list(urls)
    blocks = -(-orders // block)
    for index in range(blocks):
        pair = names if index % 2 == 0 else names[::-1]
        for name in pair:
            for _ in range(min(block, orders - len(timings[name]))):
                timings[name].append(post_order(session, urls[name]))
    return timings


def saturate(urls: dict[str, str], token: str, *, orders: int, clients: int = 4) -> dict[str, float]:
    """Orders per second each server sustains with ``clients`` concurrent clients (A B B A rounds).

    With its one worker always busy, this counts all the work a request causes,
    including the publish that follows the response, which latency alone hides.
    """
    sessions = [session_for(token) for _ in range(clients)]
    elapsed = dict.fromkeys(urls, 0.0)
    names = list(urls)
    per_round = max(orders // 4, clients)
    with ThreadPoolExecutor(clients) as pool:
        for index in range(4):
            for name in names if index % 2 == 0 else names[::-1]:
                started = time.perf_counter()
                jobs = [pool.submit(post_order, sessions[i % clients], urls[name]) for i in range(per_round)]
                for job in jobs:
                    job.result()
                elapsed[name] += time.perf_counter() - started
    return {name: 4 * per_round / seconds for name, seconds in elapsed.items()}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_pid(master: subprocess.Popen) -> int:
    """The one worker process of a gunicorn master."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master.pid:
            return int(stat.parent.name)
    raise RuntimeError(f"no worker found for gunicorn {master.pid}")


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "mean": statistics.fmean(ordered) * 1000,
        "p50": statistics.median(ordered) * 1000,
        "p95": ordered[int(0.95 * (len(ordered) - 1))] * 1000,
    }


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), platform.processor())
    system = f"{platform.system()} {platform.release()}"
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"nproc {os.cpu_count()}, {cpu or 'unknown CPU'}, Python {platform.python_version()}, {system}, "
        f"load average at the end {load}"
    )


def report(
    timings: dict[str, list[float]],
    rates: dict[str, float],
    cpu: dict[str, float],
    *,
    orders: int,
    database: str,
    redis_version: str,
) -> str:
    on, off = summary(timings["enabled"]), summary(timings["disabled"])
    overhead = {k: (on[k] / off[k] - 1) * 100 for k in on}
    # Requests i of both configurations ran next to each other: their difference
    # cancels most of the load a shared machine adds to both.
    paired = statistics.median(a - b for a, b in zip(timings["enabled"], timings["disabled"], strict=True)) * 1000
    verdict = "within" if overhead["mean"] <= TARGET_PERCENT else "OVER"
    lines = [
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC - POST /orders, {orders} per configuration",
        "",
        f"Machine: {machine()}. Server: gunicorn, 1 sync worker each, {database}; Redis {redis_version}.",
        "",
        "| BITRIX_ENABLED | mean ms | p50 ms | p95 ms |",
        "|---|---:|---:|---:|",
        f"| false | {off['mean']:.2f} | {off['p50']:.2f} | {off['p95']:.2f} |",
        f"| true | {on['mean']:.2f} | {on['p50']:.2f} | {on['p95']:.2f} |",
        f"| overhead | {overhead['mean']:+.1f}% | {overhead['p50']:+.1f}% | {overhead['p95']:+.1f}% |",
        "",
        f"Mean overhead {overhead['mean']:+.1f}%: {verdict} the {TARGET_PERCENT:.0f}% target. "
        f"Median of paired differences: {paired:+.2f} ms ({paired / off['p50'] * 100:+.1f}% of the p50).",
    ]
    if rates:
        drop = (1 - rates["enabled"] / rates["disabled"]) * 100
        lines.append(
            f"Saturated (4 concurrent clients, all work counted): {rates['disabled']:.0f} orders/s with sync off, "
            f"{rates['enabled']:.0f} with sync on ({drop:+.1f}% fewer)."
        )
    lines.append(
        f"CPU per order (all timed requests): web worker {cpu['disabled']:.2f} ms with sync off, "
        f"{cpu['enabled']:.2f} ms with sync on ({(cpu['enabled'] / cpu['disabled'] - 1) * 100:+.0f}%); "
        f"redis-server {cpu['redis']:.2f} ms."
    )
    return "\n".join(lines)


UNPUBLISHED = (
    "from crmbridge.models import OutboxEntry; from crmbridge.publishing.outbox import sent_marker_key; "
    "from crmbridge.redis_io.connection import get_redis; "
    "print(sum(not get_redis().exists(sent_marker_key(e)) for e in OutboxEntry.objects.all()))"
)


def check_published(client: redis.Redis, env: dict, expected: int) -> None:
    """Every order made with sync on is in the stream and nothing waits in the outbox (a sanity check).

    A row or two may remain whose delete was deferred (already published: its
    sent marker exists); the relay removes those. The last request's entry is
    published just after its response: allow it a moment.
    """
    deadline = time.monotonic() + 5
    while (length := client.xlen(f"{env['REDIS_STREAM_PREFIX']}operations")) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    unpublished = manage(env, "shell", "--no-imports", "-c", UNPUBLISHED).strip()
    if length != expected or unpublished != "0":
        raise SystemExit(f"expected {expected} stream entries and 0 unpublished rows, got {length} and {unpublished}")


@contextmanager
def temporary_database(workdir: Path, postgres_url: str | None, *, prefix: str = "bitrixsync_bench"):
    """A database URL: a SQLite file in ``workdir``, or a new database on ``postgres_url``, dropped after."""
    if not postgres_url:
        yield f"sqlite:///{workdir / 'bench.sqlite3'}", "temporary SQLite file"
        return
    import psycopg

    name = f"{prefix}_{os.getpid()}"
    parts = urlsplit(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}")), "temporary PostgreSQL database"
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bitrixsync-bench-"))
    server = PrivateRedis().start()
    processes: list[subprocess.Popen] = []
    try:
        with temporary_database(workdir, args.postgres) as (database_url, database):
            env = {
                **os.environ,
                **BENCH_ENV,
                "DATABASE_URL": database_url,
                "REDIS_URL": server.url,
                "REDIS_STREAM_PREFIX": "bench:",
                "BITRIX_WORKER_ENABLED": "false",
                "DEBUG": "false",
                "LOG_LEVEL": "INFO",
            }
            token = prepare_database(env)
            urls = {}
            for name, enabled in (("enabled", "true"), ("disabled", "false")):
                process, urls[name] = start_server({**env, "BITRIX_ENABLED": enabled}, workdir / f"{name}.log")
                processes.append(process)
            warm_up(urls, token, orders=args.warmup)
            pids = {
                "enabled": worker_pid(processes[0]),
                "disabled": worker_pid(processes[1]),
                "redis": server.process.pid,
            }
            cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            timings = run(urls, token, orders=args.orders, block=args.block)
            rates = saturate(urls, token, orders=args.saturate) if args.saturate else {}
            timed = args.orders + (4 * max(args.saturate // 4, 4) if args.saturate else 0)
            cpu = {name: (cpu_seconds(pid) - cpu_before[name]) / timed * 1000 for name, pid in pids.items()}
            check_published(server.client(), env, args.warmup + timed)
            stop(processes)
        redis_version = server.client().info("server")["redis_version"]
        text = report(timings, rates, cpu, orders=args.orders, database=database, redis_version=redis_version)
        print(text)
        if args.record:
            with args.record.open("a") as results:
                results.write("\n" + text + "\n")
    finally:
        stop(processes)
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


def stop(processes: list[subprocess.Popen]) -> None:
    while processes:
        process = processes.pop()
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
