"""Each Redis record has one reader: a damaged record reads as missing, everywhere."""

from __future__ import annotations

import json

from crmbridge.diagnostics.doctor import check_recent_errors
from crmbridge.diagnostics.timestamps import read_marks
from crmbridge.redis_io import streams, telemetry


def test_a_mark_that_does_not_parse_reads_as_never_recorded(redis_client):
    redis_client.set(streams.key("last_failure"), json.dumps({"at": "yesterday", "detail": "x"}))
    redis_client.set(streams.key("last_success"), "not json")

    assert telemetry.read_mark(redis_client, "failure") is None
    assert read_marks(redis_client) == {"last_success": None, "last_failure": None}
    assert check_recent_errors(redis_client).status == "OK"


def test_a_heartbeat_field_that_does_not_parse_is_left_out(redis_client):
    telemetry.write_heartbeat(
        redis_client, "worker_x-1", {"name": "worker_x-1", "processed": "many", "config": {"batch_size": 5}},
        ttl_seconds=60,
    )  # fmt: skip

    [worker] = telemetry.read_workers(redis_client)

    assert "processed" not in worker
    assert worker["config"] == {"batch_size": 5}
    assert isinstance(worker["last_beat"], float)


def test_stream_ids_parse_and_sort_like_redis():
    ids = ["1700000000000-10", "1700000000000-9", "1699999999999-0"]
    assert sorted(ids, key=streams.parse_id) == ["1699999999999-0", "1700000000000-9", "1700000000000-10"]
    assert streams.id_milliseconds("1700000000000-3") == 1700000000000
    assert streams.format_id(streams.parse_id("5-1")) == "5-1"
