"""Issue 19 item 6: a stream key of the wrong type stops only its own stream, and is named as such.

``SET bitrix:webhooks x`` used to make every XREADGROUP (one call over both
streams) raise WRONGTYPE: operations stopped syncing too.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

import pytest

from crmbridge.inbound.events import InboundEvent
from crmbridge.redis_io import streams
from crmbridge.worker import stream_consumer
from crmbridge.worker.runner import Worker
from crmbridge.worker.stream_consumer import BROKEN_LOG_SECONDS, StreamConsumer
from orders.models import Order
from tests.conftest import wait_for
from tests.worker.helpers import fast_config

pytestmark = pytest.mark.django_db(transaction=True)


def synced(orders: list[Order]) -> bool:
    return not Order.objects.filter(pk__in=[o.pk for o in orders], bitrix_deal_id__isnull=True).exists()


def unacknowledged(redis_client, stream: str) -> int:
    (group,) = [g for g in redis_client.xinfo_groups(stream) if g["name"] == streams.GROUP]
    return group["pending"] + (group["lag"] or 0)


@pytest.fixture
def running_worker():
    worker = Worker(fast_config())
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    yield worker
    worker.shutdown = True
    thread.join(10)


def test_a_string_at_the_webhooks_key_never_holds_operations_back(sandbox, alice, redis_client, caplog):
    redis_client.set(streams.webhooks_stream(), "x")
    orders = [Order.objects.create(owner=alice, service_id="welding", quantity=i + 1) for i in range(3)]

    with caplog.at_level(logging.INFO, logger="crmbridge.worker"):
        assert Worker(fast_config(), once=True).run() == 0

    assert synced(orders)
    assert redis_client.get(streams.webhooks_stream()) == "x"  # the operator's key is left alone
    named = [r.getMessage() for r in caplog.records if "bitrix:webhooks" in r.getMessage()]
    assert any("is a string, not a stream" in line and "redis-cli" in line for line in named), named
    assert not [r for r in caplog.records if r.exc_info], "no traceback: the loop was never broken"


def test_a_key_broken_under_a_running_worker_and_fixed_again(sandbox, alice, redis_client, running_worker, caplog):
    caplog.set_level(logging.INFO, logger="crmbridge.worker")
    wait_for(lambda: running_worker.iteration > 2, 10, "worker started")
    redis_client.delete(streams.webhooks_stream())
    redis_client.set(streams.webhooks_stream(), "x")

    orders = [Order.objects.create(owner=alice, service_id="welding", quantity=i + 1) for i in range(3)]
    wait_for(lambda: synced(orders), 20, "operations synced while webhooks is a string")
    assert not [r for r in caplog.records if "unexpected error in the loop" in r.getMessage()]

    redis_client.delete(streams.webhooks_stream())  # the operator moves the key away
    wait_for(lambda: "consuming it again" in caplog.text, 20, "recovery logged")
    event = redis_client.xadd(
        streams.webhooks_stream(), InboundEvent("ONCRMDEALUPDATE", 999, ts=datetime.now(UTC)).to_fields()
    )
    wait_for(lambda: unacknowledged(redis_client, streams.webhooks_stream()) == 0, 20, f"event {event} consumed")


def test_a_string_at_the_operations_key_never_holds_webhooks_back(sandbox, redis_client, running_worker):
    wait_for(lambda: running_worker.iteration > 2, 10, "worker started")
    redis_client.delete(streams.operations_stream())
    redis_client.set(streams.operations_stream(), "x")
    redis_client.xadd(streams.webhooks_stream(), InboundEvent("ONCRMDEALUPDATE", 999, ts=datetime.now(UTC)).to_fields())

    wait_for(lambda: unacknowledged(redis_client, streams.webhooks_stream()) == 0, 20, "event consumed")


class StandInClock:
    """``time`` for ``stream_consumer``: a monotonic clock that moves only when told."""

    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


def named_in_the_log(caplog, key: str) -> int:
    return len([r for r in caplog.records if r.getMessage().startswith(f"[WORKER] Redis key {key} is a")])


def test_find_broken_looks_at_the_streams_named_and_reports_each_key_new_once(redis_client, caplog):
    """Found by mutation testing: ``find_broken`` checks only the candidates it is given (all streams
    without any), and a key already set aside is not "newly found" again."""
    operations, webhooks = streams.operations_stream(), streams.webhooks_stream()
    redis_client.set(operations, "x")
    redis_client.set(webhooks, "x")
    consumer = StreamConsumer(redis_client, name="c1", stream_names=[operations, webhooks])

    assert consumer.find_broken([webhooks]) is True
    assert set(consumer.broken) == {webhooks} and consumer.streams == [operations]
    assert consumer.find_broken([webhooks]) is False  # known already
    assert consumer.find_broken() is True  # all streams: the operations key is new
    assert set(consumer.broken) == {operations, webhooks} and consumer.streams == []
    assert consumer.find_broken() is False


def test_a_key_set_aside_is_named_again_only_after_the_log_interval(redis_client, caplog, monkeypatch):
    """Found by mutation testing: the interval is per key, counted from that key's last line."""
    clock = StandInClock(1000.0)
    monkeypatch.setattr(stream_consumer, "time", clock)
    operations, webhooks = streams.operations_stream(), streams.webhooks_stream()
    redis_client.set(operations, "x")
    redis_client.set(webhooks, "x")
    consumer = StreamConsumer(redis_client, name="c1", stream_names=[operations, webhooks])
    caplog.set_level(logging.ERROR, logger="crmbridge.worker")

    consumer.find_broken([webhooks])  # named: new
    clock.now += BROKEN_LOG_SECONDS / 2
    consumer.find_broken()  # operations named (new); webhooks not yet
    assert (named_in_the_log(caplog, webhooks), named_in_the_log(caplog, operations)) == (1, 1)

    clock.now += BROKEN_LOG_SECONDS / 2  # webhooks' interval is up, not operations'
    consumer.find_broken()
    assert (named_in_the_log(caplog, webhooks), named_in_the_log(caplog, operations)) == (2, 1)
    clock.now += BROKEN_LOG_SECONDS / 2
    consumer.find_broken()
    assert (named_in_the_log(caplog, webhooks), named_in_the_log(caplog, operations)) == (2, 2)


def test_the_line_for_a_key_set_aside_names_the_streams_still_consumed(redis_client, caplog):
    """Found by mutation testing: the operator's ERROR line lists the others, or says none."""
    operations, webhooks, third = streams.operations_stream(), streams.webhooks_stream(), streams.key("third")
    consumer = StreamConsumer(redis_client, name="c1", stream_names=[operations, webhooks, third])
    caplog.set_level(logging.ERROR, logger="crmbridge.worker")

    for key in (operations, webhooks, third):
        redis_client.set(key, "x")
        consumer.find_broken()

    assert [r.getMessage().split(". Fix: ")[0] for r in caplog.records] == [
        f"[WORKER] Redis key {operations} is a string, not a stream: not consuming it (still consuming: "
        f"{webhooks}, {third})",
        f"[WORKER] Redis key {webhooks} is a string, not a stream: not consuming it (still consuming: {third})",
        f"[WORKER] Redis key {third} is a string, not a stream: not consuming it (still consuming: none)",
    ]


def test_the_step_that_meets_a_broken_key_sets_it_aside_and_asks_for_the_next_at_once(redis_client, caplog):
    """Found by mutation testing (``step``): the WRONGTYPE of a read is this case, not a loop error;
    the step counts as work done, so a ``--once`` run goes on with the other streams."""
    worker = Worker(fast_config(), name="stepper")
    worker.consumer.ensure_groups()
    redis_client.delete(streams.webhooks_stream())
    redis_client.set(streams.webhooks_stream(), "x")

    with caplog.at_level(logging.ERROR, logger="crmbridge.worker"):
        assert worker.step() is True

    assert worker.consumer.streams == [streams.operations_stream()]
    assert [m for m in caplog.messages if "bitrix:webhooks is a string" in m]
