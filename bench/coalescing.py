"""Publish-time coalescing: many PUTs on one order cost few portal updates (issue 13, item 7).

    .venv/bin/python bench/coalescing.py                      # 1 order, then 50 orders: 300 PUTs each at 20/s
    .venv/bin/python bench/coalescing.py --record             # also append the table to bench/RESULTS.md
    .venv/bin/python bench/coalescing.py --orders 1 --puts 300 --rate 20

A private stack (``bench/stack.py``): redis-server, SQLite, the sandbox with the
portal's rate limit (2 requests/s, burst 50), the web app under gunicorn and one
``run_bitrix_worker``. Client threads send ``PUT /orders/<id>`` over HTTP, each
order at ``--rate`` per second (a new quantity and comment each time), then the
queue must drain. Counted: ``crm.deal.update`` commands the sandbox received
(its stats), stream entries added, and whether each deal ends with the order's
final values. Target: at most 20 deal updates per order for 300 PUTs at 20/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chaos import start_web
from chaos_check import wait_drained
from stack import ROOT, BenchStack
from throughput import machine

RESULTS = ROOT / "bench" / "RESULTS.md"
PASSWORD = "Bench-pass-123"


def token(base: str, index: str) -> str:
    body = {"email": f"co{index}@example.com", "password": PASSWORD, "first_name": "Co", "last_name": f"Al{index}"}
    answer = requests.post(f"{base}/auth/register", json=body, timeout=30)
    assert answer.status_code == 201, f"register {body['email']}: {answer.status_code} {answer.text[:300]}"
    answer = requests.post(f"{base}/auth/token", json={"email": body["email"], "password": PASSWORD}, timeout=30)
    return answer.json()["token"]


def make_orders(base: str, count: int) -> list[tuple[int, str]]:
    """(order id, token): one customer per order, so that owners never share a lock."""
    orders = []
    for i in range(count):
        bearer = token(base, f"{count}-{i}")  # one customer per case and order
        body = {"service_id": "welding", "quantity": 1}
        answer = requests.post(f"{base}/orders", json=body, headers={"Authorization": f"Bearer {bearer}"}, timeout=30)
        assert answer.status_code == 201, answer.text
        orders.append((answer.json()["id"], bearer))
    return orders


def hammer(base: str, order_id: int, bearer: str, *, puts: int, rate: float, failures: list) -> float:
    """``puts`` PUTs at ``rate`` per second (as near as the server allows); returns the seconds taken."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {bearer}"
    start = time.monotonic()
    for n in range(1, puts + 1):
        delay = start + (n - 1) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        body = {"quantity": n, "comment": f"change {n}"}
        answer = session.put(f"{base}/orders/{order_id}", json=body, timeout=30)
        if answer.status_code != 200:
            failures.append(f"PUT {order_id} #{n}: {answer.status_code}")
    return time.monotonic() - start


def deals(stack: BenchStack) -> dict[str, dict]:
    found = requests.get(f"{stack.sandbox_url}/_sandbox/records/deal", timeout=30).json()
    records = found if isinstance(found, list) else found.get("records", [])
    return {record["ORIGIN_ID"]: record for record in records}


def updates(stack: BenchStack) -> int:
    return stack.sandbox_stats()["commands_by_method"].get("crm.deal.update", 0)


def run_case(stack: BenchStack, base: str, client: redis.Redis, *, orders: int, puts: int, rate: float) -> dict:
    made = make_orders(base, orders)
    wait_drained(stack.db_path, client, timeout=120)
    before_updates, before_entries = updates(stack), client.xlen("bitrix:operations")
    failures: list[str] = []
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=min(orders, 50)) as pool:
        took = list(pool.map(lambda o: hammer(base, o[0], o[1], puts=puts, rate=rate, failures=failures), made))
    put_seconds = time.monotonic() - started
    drain, left = wait_drained(stack.db_path, client, timeout=120)
    sent_updates = updates(stack) - before_updates
    entries = client.xlen("bitrix:operations") - before_entries
    by_origin = deals(stack)
    stale = [pk for pk, _ in made if not by_origin.get(f"order-{pk}", {}).get("TITLE", "").endswith(f" x {puts}")]
    return {
        "orders": orders, "puts": puts * orders, "rate": rate, "put_seconds": put_seconds,
        "slowest_order_seconds": max(took), "deal_updates": sent_updates, "per_order": sent_updates / orders,
        "entries": entries, "drain": drain, "left": sum(left.values()), "stale": len(stale), "failures": failures,
    }  # fmt: skip


def row(case: dict) -> str:
    return (
        f"| {case['orders']} | {case['puts']} at {case['rate']:g}/s per order ({case['slowest_order_seconds']:.1f} s) "
        f"| {case['entries']} | {case['deal_updates']} ({case['per_order']:.1f} per order) | {case['stale']} "
        f"| {case['drain']:.1f} s | {len(case['failures'])} |"
    )


HEADER = (
    "| orders | PUTs (slowest order took) | stream entries added | deal updates at the portal "
    "| deals not at the final values | drain after the last PUT | failed PUTs |\n|---|---|---|---|---|---|---|"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, nargs="*", default=[1, 50], help="cases: orders hammered at once")
    parser.add_argument("--puts", type=int, default=300, help="PUTs per order")
    parser.add_argument("--rate", type=float, default=20.0, help="PUTs per second per order")
    parser.add_argument("--record", action="store_true")
    options = parser.parse_args()
    stack = BenchStack(rate=2.0, burst=50).start()
    try:
        _web, base = start_web(stack)
        stack.start_worker(name="worker")
        client = redis.Redis(port=stack.redis.port, decode_responses=True)
        cases = [run_case(stack, base, client, orders=n, puts=options.puts, rate=options.rate) for n in options.orders]
    finally:
        stack.stop()
    table = "\n".join([HEADER, *(row(case) for case in cases)])
    print(table)
    for case in cases:
        if case["failures"]:
            print(f"{case['orders']} orders: {case['failures'][:5]}")
    if options.record:
        with RESULTS.open("a") as results:
            results.write(
                f"\n### Coalescing, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\nMachine: {machine()}\n\n"
                f"`bench/coalescing.py --puts {options.puts} --rate {options.rate:g}`: gunicorn (3 sync workers), "
                "1 worker (BITRIX_WORKER_RECORD_INTERVAL 1 s, _MAX 10 s), sandbox limit 2 requests/s burst 50.\n\n"
                f"{table}\n"
            )
    ok = all(not c["stale"] and not c["left"] and c["per_order"] <= 20 for c in cases)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
