"""Messages taken over from a stopped consumer are processed even when a later chore fails.

A takeover moves entries into this worker's pending list. If they are not handed to the
worker before the next Redis error, nothing looks at them again until a restart: they
belong to a live consumer (no takeover), are not held (no retry) and count as live
messages (no reconciliation). A real worker, in this process; a real Redis; the sandbox.
"""

from __future__ import annotations

import logging
import re
import time

import pytest
import redis

from crmbridge.redis_io import streams
from crmbridge.worker.runner import Worker
from orders.models import Order
from tests.conftest import wait_for
from tests.worker.helpers import fast_config

pytestmark = pytest.mark.django_db(transaction=True)


def test_taken_over_messages_survive_a_redis_error_in_the_same_chores(
    sandbox, alice, redis_client, caplog, monkeypatch
):
    order = Order.objects.create(owner=alice, service_id="welding", quantity=1)
    worker = Worker(fast_config(claim_idle_seconds=0.2, record_interval_seconds=0))
    worker.consumer.ensure_groups()
    # A consumer that never beat reads the order's messages, then vanishes.
    read = redis_client.xreadgroup(streams.GROUP, "vanished-1", {streams.operations_stream(): ">"}, count=100)
    assert read and read[0][1], "the vanished consumer took nothing: nothing to prove"
    # The takeover's look at the webhooks stream fails after it has claimed the operations
    # stream's entries. (A missing group or key no longer fails it: NOGROUP is answered with
    # "no consumers", so the connection is what breaks, once.)
    looked_at = worker.consumer.consumers

    def consumers(stream: str) -> list[dict]:
        if stream == streams.webhooks_stream() and not broke:
            broke.append(stream)
            raise redis.ConnectionError("Connection closed by server.")
        return looked_at(stream)

    broke: list[str] = []
    monkeypatch.setattr(worker.consumer, "consumers", consumers)
    time.sleep(0.3)  # past claim_idle

    def synced() -> bool:
        worker.step()
        order.refresh_from_db()
        return order.bitrix_deal_id is not None

    with caplog.at_level(logging.WARNING, logger="crmbridge.worker"):
        wait_for(synced, what="the taken-over order synced")
    assert redis_client.xpending(streams.operations_stream(), streams.GROUP)["pending"] == 0
    pattern = r"\[WORKER\] Takeover interrupted by a Redis error; processing the [1-9]\d* claimed"
    assert any(re.fullmatch(pattern, r.getMessage()) for r in caplog.records), caplog.messages


def test_own_messages_left_undecided_by_an_interrupted_chunk_are_processed_again(sandbox, alice, redis_client):
    order = Order.objects.create(owner=alice, service_id="welding", quantity=1)
    worker = Worker(fast_config(record_interval_seconds=0))
    worker.consumer.ensure_groups()
    # The worker reads its chunk; a Redis error ends the chunk before any outcome: nothing
    # acknowledged, nothing held, the entries pending for this live worker.
    read = worker.consumer.read_new(count=10, block_ms=None)
    assert read, "nothing read: nothing to prove"

    def synced() -> bool:
        worker.step()
        order.refresh_from_db()
        return order.bitrix_deal_id is not None

    wait_for(synced, what="the interrupted chunk's order synced")
    assert redis_client.xpending(streams.operations_stream(), streams.GROUP)["pending"] == 0


def test_messages_held_for_a_retry_are_not_taken_for_strays(sandbox, alice, redis_client):
    Order.objects.create(owner=alice, service_id="welding", quantity=1)
    sandbox.set_faults(error_500_share=1.0)
    worker = Worker(fast_config(record_interval_seconds=0, retry_base_seconds=30, retry_max_seconds=30))
    worker.consumer.ensure_groups()
    deadline = time.monotonic() + 2.5  # five looks for strays (heartbeat 0.5 s)
    while time.monotonic() < deadline:
        worker.step()
    assert len(worker.schedule) >= 1  # held for its retry in 30 s
    pending = redis_client.xpending_range(streams.operations_stream(), streams.GROUP, "-", "+", 10)
    assert pending and all(p["times_delivered"] == 1 for p in pending)
