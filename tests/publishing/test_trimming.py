"""``trim_acknowledged`` never removes an entry some group has not acknowledged or not received."""

from __future__ import annotations

import time
from io import StringIO

import pytest
import redis
from django.core.management import call_command

from crmbridge.worker.trimming import trim_acknowledged, trim_streams

STREAM = "bitrix:operations"


@pytest.fixture
def ids(redis_client) -> list[str]:
    return [redis_client.xadd(STREAM, {"n": str(i)}) for i in range(10)]


def read(client, group: str, count: int) -> list[str]:
    reply = client.xreadgroup(group, "c1", {STREAM: ">"}, count=count)
    return [entry_id for entry_id, _ in reply[0][1]] if reply else []


def left(client) -> list[str]:
    return [entry_id for entry_id, _ in client.xrange(STREAM)]


def trim(client, retention_seconds: int = 0) -> int:
    return trim_acknowledged(client, STREAM, retention_seconds=retention_seconds)


def test_keeps_pending_and_undelivered_entries(redis_client, ids):
    redis_client.xgroup_create(STREAM, "g1", id="0")
    delivered = read(redis_client, "g1", 6)
    redis_client.xack(STREAM, "g1", *delivered[:3])  # 3 acknowledged, 3 pending, 4 never delivered

    assert trim(redis_client) == 3
    assert left(redis_client) == ids[3:]
    assert trim(redis_client) == 0


def test_the_oldest_pending_entry_bounds_the_trim_even_if_later_ones_are_acknowledged(redis_client, ids):
    redis_client.xgroup_create(STREAM, "g1", id="0")
    delivered = read(redis_client, "g1", 10)
    redis_client.xack(STREAM, "g1", *delivered[:2], *delivered[3:])  # only the third is pending

    assert trim(redis_client) == 2
    assert left(redis_client) == ids[2:]


def test_every_group_must_be_done(redis_client, ids):
    redis_client.xgroup_create(STREAM, "fast", id="0")
    redis_client.xgroup_create(STREAM, "slow", id="0")
    redis_client.xack(STREAM, "fast", *read(redis_client, "fast", 10))
    redis_client.xack(STREAM, "slow", *read(redis_client, "slow", 4))

    assert trim(redis_client) == 4
    assert left(redis_client) == ids[4:]


def test_a_group_that_received_nothing_keeps_everything(redis_client, ids):
    redis_client.xgroup_create(STREAM, "g1", id="0")
    redis_client.xgroup_create(STREAM, "idle", id="0")
    redis_client.xack(STREAM, "g1", *read(redis_client, "g1", 10))

    assert trim(redis_client) == 0
    assert left(redis_client) == ids


def test_all_acknowledged_by_all_groups_trims_everything(redis_client, ids):
    redis_client.xgroup_create(STREAM, "g1", id="0")
    redis_client.xack(STREAM, "g1", *read(redis_client, "g1", 10))
    assert trim(redis_client) == 10
    assert left(redis_client) == []


def test_no_group_or_no_stream_trims_nothing(redis_client, ids):
    assert trim(redis_client) == 0
    assert left(redis_client) == ids
    assert trim_acknowledged(redis_client, "bitrix:nothing-here", retention_seconds=0) == 0


def test_retention_keeps_recent_acknowledged_entries(redis_client):
    now_ms = int(time.time() * 1000)
    old = [redis_client.xadd(STREAM, {"n": "old"}, id=f"{now_ms - 7_200_000 + i}-0") for i in range(3)]
    recent = [redis_client.xadd(STREAM, {"n": "new"}) for _ in range(3)]
    redis_client.xgroup_create(STREAM, "g1", id="0")
    redis_client.xack(STREAM, "g1", *read(redis_client, "g1", 10))

    assert trim(redis_client, retention_seconds=3600) == 3
    assert left(redis_client) == recent
    assert old  # trimmed above


def test_the_command_trims_the_consumed_streams(redis_client, ids):
    redis_client.xgroup_create(STREAM, "bitrix_workers", id="0")
    redis_client.xack(STREAM, "bitrix_workers", *read(redis_client, "bitrix_workers", 5))
    out = StringIO()
    call_command("bitrix_trim_streams", "--retention", "0", stdout=out)

    assert "bitrix:operations: trimmed 5 entries" in out.getvalue()
    assert "bitrix:webhooks: trimmed 0 entries" in out.getvalue()
    assert left(redis_client) == ids[5:]


def test_a_client_that_does_not_decode_works_too(private_redis, redis_client, ids):
    redis_client.xgroup_create(STREAM, "g1", id="0")
    redis_client.xack(STREAM, "g1", *read(redis_client, "g1", 4))
    raw = redis.Redis(host="127.0.0.1", port=private_redis.port)

    assert trim_acknowledged(raw, STREAM, retention_seconds=0) == 4


def test_trim_streams_without_a_retention_keeps_what_the_setting_says(settings, redis_client):
    """Found by mutation testing: the worker's chore calls ``trim_streams`` with no retention."""
    settings.BITRIX_STREAM_RETENTION_SECONDS = 3600
    now_ms = int(time.time() * 1000)
    for i in range(3):
        redis_client.xadd(STREAM, {"n": "old"}, id=f"{now_ms - 7_200_000 + i}-0")
    recent = [redis_client.xadd(STREAM, {"n": "new"}) for _ in range(2)]
    redis_client.xgroup_create(STREAM, "g1", id="0")
    redis_client.xack(STREAM, "g1", *read(redis_client, "g1", 10))

    assert trim_streams(redis_client) == {"bitrix:operations": 3, "bitrix:webhooks": 0}
    assert left(redis_client) == recent

    settings.BITRIX_STREAM_RETENTION_SECONDS = 0
    assert trim_streams(redis_client) == {"bitrix:operations": 2, "bitrix:webhooks": 0}


def test_an_entry_just_past_the_retention_goes_and_one_just_inside_stays(redis_client):
    """Found by mutation testing: the cut-off is exactly ``retention_seconds`` back (a day here; the
    entries are 10 s either side of it, far more than the test can take)."""
    day_ms, now_ms = 86_400_000, int(time.time() * 1000)
    redis_client.xadd(STREAM, {"n": "past"}, id=f"{now_ms - day_ms - 10_000}-0")
    inside = redis_client.xadd(STREAM, {"n": "inside"}, id=f"{now_ms - day_ms + 10_000}-0")
    redis_client.xgroup_create(STREAM, "g1", id="0")
    redis_client.xack(STREAM, "g1", *read(redis_client, "g1", 10))

    assert trim(redis_client, retention_seconds=86_400) == 1
    assert left(redis_client) == [inside]  # the entry past the cut-off is gone
