"""How many operations per second the sandbox takes through ``batch`` (not a test: a measurement).

    python -m tests.bitrix.measure_sandbox_throughput [--ops 20000] [--clients 1] [--db]

Starts ``manage.py bitrix_sandbox --no-limit`` as its own process (as a
benchmark would), then sends ``crm.deal.add`` commands with realistic fields
in batches of 50 from one or more client processes, and prints operations/s.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from crmbridge.bitrix.client import BitrixClient
from devtools.testing.ports import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def deal(n: int) -> dict:
    return {
        "TITLE": f"Order #{n}: CNC milling x 3",
        "OPPORTUNITY": "1500.00",
        "CURRENCY_ID": "RUB",
        "STAGE_ID": "NEW",
        "COMMENTS": "Material: Сталь 40 (сталь)\n\nDeburr & anodize [black], 100% 😀",
        "CONTACT_ID": 1,
        "ORIGINATOR_ID": "bitrixsync",
        "ORIGIN_ID": f"order-{n}",
    }


def send(webhook_url: str, first: int, count: int) -> int:
    client = BitrixClient(webhook_url)
    done = 0
    for start in range(first, first + count, 50):
        commands = {
            f"d{n}": ("crm.deal.add", {"fields": deal(n)}) for n in range(start, min(start + 50, first + count))
        }
        done += len(client.batch(commands).results)
    return done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ops", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--db", action="store_true", help="keep records in SQLite instead of memory")
    args = parser.parse_args()
    port, code = free_port(), f"bench-{secrets.token_hex(6)}"
    command = [sys.executable, "manage.py", "bitrix_sandbox", "--no-limit", "--port", str(port), "--code", code]
    if args.db:
        command += ["--db", str(Path(tempfile.mkdtemp()) / "sandbox.sqlite3")]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bitrixsync.settings"}
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, timeout=15)
        webhook_url = f"http://127.0.0.1:{port}/rest/1/{code}/"
        share = args.ops // args.clients
        started = time.perf_counter()
        with ProcessPoolExecutor(args.clients) as pool:
            done = sum(pool.map(send, [webhook_url] * args.clients, range(0, args.ops, share), [share] * args.clients))
        elapsed = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=10)
    store = "SQLite" if args.db else "memory"
    print(f"{done} operations in {elapsed:.2f} s = {done / elapsed:,.0f} ops/s ({args.clients} client(s), {store})")


if __name__ == "__main__":
    main()
