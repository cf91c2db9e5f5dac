"""The worker's parts on their own: a shutdown ends a wait at once; chores hand back what they took over."""

from __future__ import annotations

import threading
import time

import pytest

from crmbridge.redis_io import streams
from crmbridge.worker.runner import Worker
from crmbridge.worker.stream_consumer import StreamConsumer
from tests.worker.helpers import fast_config


@pytest.mark.django_db
def test_a_shutdown_ends_a_long_wait_at_once():
    worker = Worker(fast_config(), name="waiter")
    threading.Timer(0.2, lambda: setattr(worker, "shutdown", True)).start()
    started = time.monotonic()
    worker._sleep(30)
    assert time.monotonic() - started < 5


@pytest.mark.django_db
def test_chores_return_the_messages_they_take_over_without_processing_them(redis_client):
    dead = StreamConsumer(redis_client, name="gone", stream_names=streams.consumed_streams())
    dead.ensure_groups()
    redis_client.xadd(streams.operations_stream(), {"v": "1", "entity": "deal", "op": "create", "id": "1"})
    assert len(dead.read_new(count=10, block_ms=None)) == 1
    worker = Worker(fast_config(claim_idle_seconds=0.001), name="alive")
    time.sleep(0.01)

    claimed = worker.chores.run(paused=False)

    assert [m.fields["id"] for m in claimed] == ["1"]
    assert redis_client.xpending(streams.operations_stream(), streams.GROUP)["consumers"] == [
        {"name": "alive", "pending": 1}
    ]
