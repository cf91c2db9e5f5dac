"""Real worker processes against kills, signals, and Redis losing its streams."""

from __future__ import annotations

import signal

import pytest

from crmbridge.redis_io import streams, telemetry
from orders.models import Order
from tests.conftest import wait_for
from tests.worker.helpers import start_worker_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def synced(ids: list[int]) -> int:
    return Order.objects.filter(pk__in=ids, bitrix_deal_id__isnull=False).count()


def make_orders(users, per_user: int) -> list[int]:
    return [
        Order.objects.create(owner=user, service_id="cnc-turning", quantity=i + 1).pk
        for user in users
        for i in range(per_user)
    ]


@pytest.fixture
def customers(django_user_model):
    return [
        django_user_model.objects.create_user(username=f"c{i}", email=f"c{i}@example.com", password="x-Pass-123")
        for i in range(30)
    ]


def test_sigkill_mid_run_then_another_worker_loses_and_duplicates_nothing(sandbox, customers, redis_client, tmp_path):
    ids = make_orders(customers, 3)
    sandbox.set_faults(latency_ms=150)
    first = start_worker_process("--batch-size", "10", log_path=tmp_path / "first.log")
    try:
        wait_for(lambda: synced(ids) > 0, what="first deals")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert synced(ids) < len(ids), "the kill came too late to prove anything"
        sandbox.portal.faults.reset()
        second = start_worker_process(log_path=tmp_path / "second.log")
        wait_for(lambda: synced(ids) == len(ids), what="all deals")
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0
    finally:
        for process in (first, locals().get("second")):
            if process and process.poll() is None:
                process.kill()
    deals = [d for d in sandbox.records("deal") if d["ORIGIN_ID"].startswith("order-")]
    assert len(deals) == len(ids)
    assert not sandbox.stats()["duplicates"]["deal"] and not sandbox.stats()["duplicates"]["contact"]
    assert redis_client.xpending(streams.operations_stream(), streams.GROUP)["pending"] == 0


def test_sigterm_finishes_the_chunk_and_exits_cleanly(sandbox, customers, redis_client, tmp_path):
    ids = make_orders(customers, 2)
    sandbox.set_faults(latency_ms=100)
    worker = start_worker_process(log_path=tmp_path / "worker.log")
    try:
        wait_for(lambda: synced(ids) > 0, what="first deals")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    log = (tmp_path / "worker.log").read_text()
    assert "Received SIGTERM" in log
    assert telemetry.read_workers(redis_client) == []  # heartbeat removed
    # Nothing that was done is left unacknowledged: every pending entry is for an order without a deal.
    pending = redis_client.xpending_range(streams.operations_stream(), streams.GROUP, "-", "+", 1000)
    done = set(Order.objects.filter(pk__in=ids, bitrix_deal_id__isnull=False).values_list("pk", flat=True))
    for entry in pending:
        [(_, fields)] = redis_client.xrange(streams.operations_stream(), entry["message_id"], entry["message_id"])
        assert not (fields["entity"] == "deal" and int(fields["id"]) in done)


def test_stream_and_group_deleted_and_redis_restarted_under_a_running_worker(
    sandbox, customers, redis_client, private_redis, tmp_path
):
    worker = start_worker_process(log_path=tmp_path / "worker.log")
    try:
        first = make_orders(customers[:2], 1)
        wait_for(lambda: synced(first) == len(first), what="first orders")

        redis_client.xgroup_destroy(streams.operations_stream(), streams.GROUP)
        after_group = make_orders(customers[2:4], 1)
        wait_for(lambda: synced(after_group) == len(after_group), what="orders after XGROUP DESTROY")

        redis_client.delete(streams.operations_stream())
        after_delete = make_orders(customers[4:6], 1)
        wait_for(lambda: synced(after_delete) == len(after_delete), what="orders after DEL stream")

        private_redis.restart()  # no persistence: Redis comes back empty
        after_restart = make_orders(customers[6:8], 1)
        wait_for(lambda: synced(after_restart) == len(after_restart), what="orders after Redis restart")
        assert worker.poll() is None, "the worker died"
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(15)
        finally:
            if worker.poll() is None:
                worker.kill()
    log = (tmp_path / "worker.log").read_text()
    assert "NOGROUP" in log


def test_a_second_sigterm_stops_the_worker_at_once_with_128_plus_the_signal(sandbox, customers, tmp_path):
    """Found by mutation testing (``_install_signal_handlers``): the first signal waits for the request
    in flight; a second one ends the process there, exit status 143 like a shell's."""
    make_orders(customers[:1], 1)
    sandbox.set_faults(latency_ms=30_000)  # the worker's first batch hangs in the portal, far longer than the test
    log = tmp_path / "worker.log"
    worker = start_worker_process(log_path=log)
    try:
        wait_for(lambda: sandbox.stats()["by_method"].get("batch"), what="the worker's batch in flight")
        worker.send_signal(signal.SIGTERM)
        wait_for(lambda: "Received SIGTERM" in log.read_text(), what="the first signal taken")
        # The first handler sets the flag from a thread of its own: repeat until a signal finds it set.
        assert (
            wait_for(lambda: worker.send_signal(signal.SIGTERM) or worker.poll(), what="the exit", interval=0.2) == 143
        )
    finally:
        if worker.poll() is None:
            worker.kill()
