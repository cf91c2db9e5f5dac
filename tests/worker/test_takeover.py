"""Issue 13, item 3: liveness from the heartbeat, not from idle time.

Real worker processes (``manage.py run_bitrix_worker``), a real Redis, the sandbox over HTTP.
"""

from __future__ import annotations

import signal
import time

import pytest
import redis

from crmbridge.redis_io import streams, telemetry
from orders.models import Order
from tests.conftest import wait_for
from tests.worker.helpers import start_worker_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

HEARTBEAT = 1.0


def pending_of(redis_client, consumer: str) -> int:
    try:
        consumers = redis_client.xinfo_consumers(streams.operations_stream(), streams.GROUP)
    except redis.ResponseError:  # no group yet
        return 0
    return next((c["pending"] for c in consumers if c["name"] == consumer), 0)


def live(redis_client) -> set[str]:
    return {w["name"] for w in telemetry.read_workers(redis_client)}


@pytest.fixture
def customers(django_user_model):
    return [
        django_user_model.objects.create_user(username=f"t{i}", email=f"t{i}@example.com", password="x-Pass-123")
        for i in range(20)
    ]


def make_orders(users, per_user: int) -> list[int]:
    return [
        Order.objects.create(owner=u, service_id="welding", quantity=i + 1).pk for u in users for i in range(per_user)
    ]


def test_a_killed_workers_entries_are_owned_by_a_live_one_within_three_heartbeats(
    sandbox, customers, redis_client, tmp_path
):
    # 40 messages (20 contacts, 20 deals): worker a takes them all in its first chunk, whose one
    # request takes 15 s; worker b starts meanwhile and finds nothing else to do.
    ids = make_orders(customers[:10], 2)
    sandbox.set_faults(latency_ms=15000)
    env = {"BITRIX_WORKER_HEARTBEAT": str(HEARTBEAT)}
    # claim_idle far beyond the test: only the heartbeat can explain a takeover.
    first = start_worker_process("--name", "worker_a-1", "--claim-idle", "600", log_path=tmp_path / "a.log", **env)
    wait_for(lambda: pending_of(redis_client, "worker_a-1") > 0, 30, "worker a holding entries")
    second = start_worker_process("--name", "worker_b-2", "--claim-idle", "600", log_path=tmp_path / "b.log", **env)
    wait_for(lambda: "worker_b-2" in live(redis_client), 12, "worker b beating")
    assert pending_of(redis_client, "worker_a-1") > 0, "worker a finished before b started: nothing to prove"

    first.send_signal(signal.SIGKILL)
    first.wait(10)
    killed_at = time.monotonic()
    wait_for(lambda: pending_of(redis_client, "worker_a-1") == 0, 3 * HEARTBEAT + 1.5, "takeover")
    took = time.monotonic() - killed_at

    sandbox.portal.faults.reset()
    wait_for(lambda: Order.objects.filter(pk__in=ids, bitrix_deal_id__isnull=True).count() == 0, 60, "all synced")
    second.send_signal(signal.SIGTERM)
    assert second.wait(15) == 0
    log = (tmp_path / "b.log").read_text()
    assert "Took over" in log and "worker_a-1" in log, log[-2000:]
    assert took <= 3 * HEARTBEAT + 1.5
    assert not sandbox.stats()["duplicates"]["deal"] and not sandbox.stats()["duplicates"]["contact"]
    assert len([d for d in sandbox.records("deal") if d["ORIGIN_ID"].startswith("order-")]) == len(ids)


def test_two_live_workers_under_load_take_nothing_from_each_other(sandbox, customers, redis_client, tmp_path):
    ids = make_orders(customers, 3)
    sandbox.set_faults(latency_ms=2500)  # every chunk takes longer than claim_idle (2 s)
    env = {"BITRIX_WORKER_HEARTBEAT": str(HEARTBEAT)}
    workers = [
        start_worker_process("--name", f"worker_live-{n}", "--batch-size", "5", log_path=tmp_path / f"{n}.log", **env)
        for n in (1, 2)
    ]
    wait_for(lambda: Order.objects.filter(pk__in=ids, bitrix_deal_id__isnull=False).count() >= 20, 90, "progress")
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(20) == 0
    for n in (1, 2):
        log = (tmp_path / f"{n}.log").read_text()
        assert "Took over" not in log, log[-3000:]
    assert not sandbox.stats()["duplicates"]["deal"]
