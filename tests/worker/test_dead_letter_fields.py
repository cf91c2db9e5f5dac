"""Dead letters written oddly, and letters Redis refuses (found by mutation testing).

Pinned: a letter missing its fields (written by a script or an older version) reads as
empty strings, an empty payload and no attempts, never ``None`` nor a crash; when Redis
refuses letters for different reasons, the error names each reason once and which
source IDs were refused (their messages then stay pending).
"""

from __future__ import annotations

import pytest

from crmbridge.redis_io import streams
from crmbridge.worker.dead_letters import DeadLetter, DeadLetterError, move_to_dead_letters, parse_dead_letter


def test_a_letter_with_no_fields_reads_as_empty():
    assert parse_dead_letter("5-0", {}) == {
        "id": "5-0",
        "source_stream": "",
        "source_id": "",
        "payload": {},
        "reason": "",
        "error_code": "",
        "error_description": "",
        "attempts": 0,
        "first_seen": "",
        "failed_at": "",
        "consumer": "",
    }


def test_letters_refused_for_two_reasons_name_both_and_their_source_ids(redis_client):
    redis_client.set("not-a-stream", "x")
    redis_client.xgroup_create(streams.operations_stream(), streams.GROUP, mkstream=True)
    letters = [
        DeadLetter(source_stream=streams.operations_stream(), source_id="not-an-id", payload={}, reason="manual"),
        DeadLetter(source_stream="not-a-stream", source_id="1-0", payload={}, reason="manual"),
        DeadLetter(source_stream="not-a-stream", source_id="2-0", payload={}, reason="manual"),
    ]

    with pytest.raises(DeadLetterError) as refused:
        move_to_dead_letters(redis_client, letters)

    assert set(refused.value.failed) == {"not-an-id", "1-0", "2-0"}
    count, reasons = str(refused.value).split(" dead letter(s) not written: ")
    assert count == "3"
    assert sorted(reasons.split("; ")) == sorted(set(refused.value.failed.values()))
    assert len(reasons.split("; ")) == 2  # invalid ID, WRONGTYPE
