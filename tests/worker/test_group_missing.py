"""A consumer group gone under a running worker (found by mutation testing).

Pinned: the WARNING line naming the NOGROUP error and the group recreated; a pause of one
second before recreating it (NOGROUP fails instantly: never spin); the loss reconciled at
the next chores with NOGROUP as its reason; a group that cannot be recreated is logged.
"""

from __future__ import annotations

import logging
import time

import pytest
import redis

from crmbridge.redis_io import streams
from crmbridge.worker.runner import Worker
from tests.worker.helpers import fast_config

pytestmark = pytest.mark.django_db(transaction=True)  # the loop closes old connections


def lines(caplog, start: str) -> list[str]:
    return [m for m in caplog.messages if m.startswith(start)]


def test_a_destroyed_group_is_recreated_after_a_second_and_reconciled_as_a_loss(redis_client, caplog):
    worker = Worker(fast_config(), name="w-1")
    worker.consumer.ensure_groups()
    worker.step()  # the first look at Redis: its marker is set, a reconciliation done
    redis_client.delete(streams.key("reconcile:loss:lock"))  # that one's lease is over
    redis_client.xgroup_destroy(streams.operations_stream(), streams.GROUP)
    caplog.set_level(logging.WARNING, logger="crmbridge.worker")
    caplog.clear()

    started = time.monotonic()
    worker.step()
    took = time.monotonic() - started
    worker.step()

    key, group = streams.operations_stream(), streams.GROUP
    error = f"NOGROUP No such key '{key}' or consumer group '{group}' in XREADGROUP with GROUP option"
    assert lines(caplog, "[WORKER] NOGROUP") == [f"[WORKER] NOGROUP ({error}): recreating consumer group {group}"]
    assert lines(caplog, "[WORKER] Redis lost data?") == [
        f"[WORKER] Redis lost data? NOGROUP ({error}): reconciling now (not waiting for BITRIX_RECONCILE_AFTER)"
    ]
    assert group in {g["name"] for g in redis_client.xinfo_groups(key)}
    assert 1.0 <= took < 2.0  # one pause of a second, not two


def test_a_group_that_cannot_be_recreated_is_logged(redis_client, caplog):
    """Redis at its memory limit refuses XGROUP CREATE (OOM)."""
    worker = Worker(fast_config(), name="w-1")
    worker.shutdown = True  # the pause returns at once
    redis_client.config_set("maxmemory", "1")
    try:
        with caplog.at_level(logging.WARNING, logger="crmbridge.worker"):
            worker._group_missing(redis.ResponseError("NOGROUP No such key"))
    finally:
        redis_client.config_set("maxmemory", "0")

    [line] = lines(caplog, "[WORKER] Could not recreate the consumer group: ")
    assert line == "[WORKER] Could not recreate the consumer group: command not allowed when used memory > 'maxmemory'."
