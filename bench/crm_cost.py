"""Cost budget (issue 20 item 9): portal commands per order, counted by the sandbox.

    .venv/bin/python bench/crm_cost.py            # N = 200 customers with one order each
    .venv/bin/python bench/crm_cost.py --n 1000 --record   # also append to bench/RESULTS.md

A private stack (redis-server, SQLite, sandbox process, one worker) with pipeline 3
set up in the sandbox and ``BITRIX_DEAL_CATEGORY_MAP=welding=3``. Phases, each
counted from the sandbox's ``commands_by_method`` (every command, in a batch or not):

1. new orders of new customers (contact + deal + product rows, and whatever lookup the
   worker makes for a new customer);
2. an update that changes the rows (quantity and amount);
3. an update that does not (the comment);
4. a service change into another pipeline (a move: ``crm.item.update``).

The worker's start-up check of the portal (``crm.category.list``, ``crm.status.list``,
userfield lists: once per worker process) is reported apart, not per order.
Budget: <= 4 commands per new order of a new customer, <= 2 per update, 1 when the
rows did not change.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import ROOT, BenchStack

RESULTS = ROOT / "bench" / "RESULTS.md"
START_UP = {"crm.category.list", "crm.status.list", "crm.deal.userfield.list", "crm.contact.userfield.list"}
PHASES = {
    "rows": "update changing the rows (quantity)",
    "comment": "update not changing the rows (comment)",
    "service": "service change into another pipeline",
}
BUDGET = {"new": 4, "rows": 2, "comment": 1, "service": None}


def apply_change(kind: str) -> None:
    """Run inside the stack's environment: change every order, the way the API does (signals queue it)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bitrixsync.settings")
    import django

    django.setup()
    from orders.models import Order

    for order in Order.objects.order_by("pk"):
        if kind == "rows":
            order.quantity, order.amount = order.quantity + 1, order.amount + 7
            order.save(update_fields=["quantity", "amount", "updated_at"])
        elif kind == "comment":
            order.comment = "bench: a comment"
            order.save(update_fields=["comment", "updated_at"])
        else:
            order.service_id = "welding"
            order.save(update_fields=["service_id", "updated_at"])


def commands(stack: BenchStack) -> Counter:
    return Counter(stack.sandbox_stats()["commands_by_method"])


def wait_quiet(stack: BenchStack, method: str, expected: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while commands(stack)[method] < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{method}: {commands(stack)[method]} of {expected}")
        time.sleep(0.1)
    time.sleep(1.0)  # anything after the last one (rows ride in the same batch, but be sure)


def per_order(before: Counter, after: Counter, n: int) -> tuple[float, dict[str, int]]:
    spent = {m: after[m] - before[m] for m in after if after[m] - before[m] and m not in START_UP}
    return sum(spent.values()) / n, spent


def run(n: int) -> list[tuple[str, float, dict, int | None]]:
    stack = BenchStack(rate=None, burst=None).start()
    rows = []
    try:
        requests.post(f"{stack.sandbox_url}/_sandbox/setup", json={"categories": {"3": "Welding"}}, timeout=10)
        subprocess.run([sys.executable, str(ROOT / "bench" / "seed.py"), str(n)], env=stack.env(), check=True)
        env = {"BITRIX_DEAL_CATEGORY_MAP": "welding=3"}
        stack.start_worker(name="worker", **env)
        stack.wait_synced(n, n, timeout=600)
        time.sleep(1.0)
        after = commands(stack)
        startup = {m: after[m] for m in START_UP if after[m]}
        cost, spent = per_order(Counter(), after, n)
        rows.append(("new order of a new customer", cost, spent, BUDGET["new"]))
        for kind, label in PHASES.items():
            before = commands(stack)
            change = [sys.executable, str(Path(__file__).resolve()), "--apply", kind]
            subprocess.run(change, env=stack.env(**env), check=True)
            wait_quiet(stack, "crm.deal.update", before["crm.deal.update"] + n)
            cost, spent = per_order(before, commands(stack), n)
            rows.append((label, cost, spent, BUDGET[kind]))
        rows.append(("worker start-up check (once per worker, not per order)", 0.0, startup, None))
        return rows
    finally:
        stack.stop()


def table(rows, n: int) -> str:
    lines = [
        f"| phase (N = {n} orders) | commands per order | budget | by method |",
        "|---|---:|---:|---|",
    ]
    for label, cost, spent, budget in rows:
        methods = ", ".join(f"{m} {c}" for m, c in sorted(spent.items()))
        shown = f"{cost:.2f}" if cost else "-"
        lines.append(f"| {label} | {shown} | {budget if budget is not None else '-'} | {methods} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="customers, one order each (default 200)")
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    parser.add_argument("--apply", choices=sorted(PHASES), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.apply:
        apply_change(options.apply)
        return
    rows = run(options.n)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    report = "\n".join(
        [f"### CRM cost budget, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "",
         f"`.venv/bin/python bench/crm_cost.py --n {options.n}`; load average at the end {load} (2 cores shared).",
         "", table(rows, options.n), ""]
    )  # fmt: skip
    print(report)
    if options.record:
        with RESULTS.open("a") as f:
            f.write("\n" + report)


if __name__ == "__main__":
    main()
