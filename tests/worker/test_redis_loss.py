"""Issue 19 item 7: Redis restarted empty is noticed and reconciled at once, not after BITRIX_RECONCILE_AFTER.

Before, orders whose only copy was in Redis waited for reconciliation
(300 s + the 60 s interval): about 6 minutes. The worker now notices the loss
(a new ``run_id``, the project's marker key gone, NOGROUP) and queues every
waiting record again at once. A real private redis-server is restarted empty.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
from django.conf import settings

from crmbridge.models import OutboxEntry
from crmbridge.publishing.outbox import already_sent
from crmbridge.redis_io import streams
from crmbridge.worker.runner import Worker
from orders.models import Order
from tests.conftest import wait_for
from tests.worker.helpers import fast_config

pytestmark = pytest.mark.django_db(transaction=True)

WITHIN = 60.0  # the bound, from Redis being back to every record synced


@pytest.fixture
def production_reconcile(settings):
    """The defaults: a record must wait 300 s before the periodic reconciliation would requeue it."""
    settings.BITRIX_RECONCILE_AFTER = 300.0
    settings.BITRIX_RECONCILE_INTERVAL = 60.0


def only_in_redis(redis_client, orders: list[Order]) -> None:
    """The outbox rows were published (their "sent" markers exist): drop them, as their deferred delete would."""
    assert redis_client.xlen(streams.operations_stream()) >= len(orders)
    rows = list(OutboxEntry.objects.all())
    assert all(already_sent(redis_client, rows))
    OutboxEntry.objects.all().delete()


def synced(orders: list[Order]) -> bool:
    return not Order.objects.filter(pk__in=[o.pk for o in orders], bitrix_deal_id__isnull=True).exists()


def assert_each_deal_once(sandbox, orders: list[Order]) -> None:
    deals = sorted(d["ORIGIN_ID"] for d in sandbox.records("deal") if d["ORIGIN_ID"].startswith("order-"))
    assert deals == sorted(f"order-{o.pk}" for o in orders)
    assert not sandbox.stats()["duplicates"]["deal"]


def test_redis_restarted_empty_is_reconciled_at_once(
    sandbox, alice, redis_client, private_redis, production_reconcile, caplog
):
    orders = [Order.objects.create(owner=alice, service_id="welding", quantity=i + 1) for i in range(12)]
    only_in_redis(redis_client, orders)
    caplog.set_level(logging.WARNING, logger="crmbridge.worker")
    from crmbridge.worker.runner import Worker

    sandbox.set_faults(auth_error="expired_token")
    worker = Worker(fast_config())
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: worker.paused_reason, 20, "worker paused holding the messages")

        private_redis.restart()  # no persistence: every message and the group are gone
        back = time.monotonic()
        sandbox.portal.faults.reset()

        wait_for(lambda: synced(orders), WITHIN, "every order synced after Redis came back empty")
        assert time.monotonic() - back < WITHIN
    finally:
        worker.shutdown = True
        thread.join(10)
    assert_each_deal_once(sandbox, orders)
    assert "reconciling now" in caplog.text and "run_id" in caplog.text


def test_flushall_under_a_running_worker_is_reconciled_at_once(
    sandbox, alice, redis_client, production_reconcile, caplog
):
    """Same server (same run_id), data gone: the project's marker key is missing."""
    from crmbridge.worker.runner import Worker

    caplog.set_level(logging.WARNING, logger="crmbridge.worker")
    worker = Worker(fast_config())
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: worker.iteration > 3, 20, "worker running")
        sandbox.set_faults(auth_error="expired_token")
        orders = [Order.objects.create(owner=alice, service_id="welding", quantity=i + 1) for i in range(5)]
        wait_for(lambda: worker.paused_reason, 20, "worker paused holding the messages")
        only_in_redis(redis_client, orders)

        redis_client.flushall()
        sandbox.portal.faults.reset()

        wait_for(lambda: synced(orders), WITHIN, "every order synced after FLUSHALL")
    finally:
        worker.shutdown = True
        thread.join(10)
    assert_each_deal_once(sandbox, orders)
    assert "reconciling now" in caplog.text
    assert settings.BITRIX_RECONCILE_AFTER == 300.0


def test_a_steady_redis_is_never_taken_for_a_loss(sandbox, redis_client, caplog):
    """Only the first look of a worker on an empty Redis (no marker yet) reconciles; later heartbeats do not."""
    from crmbridge.worker.runner import Worker

    caplog.set_level(logging.WARNING, logger="crmbridge.worker")
    worker = Worker(fast_config())  # heartbeat 0.5 s: the watch looks every 0.5 s
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: worker.iteration > 3, 20, "worker running")
        time.sleep(2.5)
    finally:
        worker.shutdown = True
        thread.join(10)
    assert caplog.text.count("Redis lost data?") == 1
    assert redis_client.get("bitrix:redis:marker") == redis_client.info("server")["run_id"]


def test_a_record_saved_just_before_the_loss_is_queued_again_too(alice, redis_client):
    """Found by mutation testing (``older_than=1``): after a loss no record is too recent to queue again."""
    order = Order.objects.create(owner=alice, service_id="welding", quantity=1)
    only_in_redis(redis_client, [order])
    redis_client.flushall()  # the private Redis: the order's message and the project's marker are gone
    worker = Worker(fast_config(), name="after-the-loss")

    assert worker.chores.watch_for_loss() >= 1

    queued = [fields for _, fields in redis_client.xrange(streams.operations_stream())]
    assert {"entity": "deal", "id": str(order.pk), "src": "reconcile"}.items() <= next(
        f for f in queued if f["entity"] == "deal"
    ).items()
