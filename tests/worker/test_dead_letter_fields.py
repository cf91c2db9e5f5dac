"""Dead letters written oddly, and letters Redis refuses (found by mutation testing).

Pinned: a letter reads back with every field the worker wrote (payload JSON kept
readable, not \\u-escaped; the description cut at 2,000 characters; ``failed_at`` in
UTC); a letter missing its fields (written by a script or an older version) reads as
empty strings, an empty payload and no attempts, never ``None`` nor a crash; when Redis
refuses letters for different reasons, the error names each reason once and which
source IDs were refused (their messages then stay pending).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from crmbridge.redis_io import streams
from crmbridge.worker.dead_letters import DeadLetter, DeadLetterError, move_to_dead_letters, parse_dead_letter
from crmbridge.worker.stream_consumer import StreamMessage


def test_a_letter_reads_back_with_every_field_it_was_written_with():
    message = StreamMessage("bitrix:operations", "3-0", {"entity": "deal", "note": "Ёлка"}, deliveries=4)
    letter = DeadLetter.of(message, reason="permanent_error", consumer="w-1", error_code="ERR", description="x" * 3000)
    fields = replace(letter, first_seen="2026-12-06T06:00:00+00:00").to_fields()

    parsed = parse_dead_letter("9-0", fields)

    assert '"note": "Ёлка"' in fields["payload"]
    failed_at = datetime.fromisoformat(parsed.pop("failed_at"))
    assert failed_at.tzinfo == UTC and abs((datetime.now(UTC) - failed_at).total_seconds()) < 60
    assert parsed == {
        "id": "9-0",
        "source_stream": "bitrix:operations",
        "source_id": "3-0",
        "payload": {"entity": "deal", "note": "Ёлка"},
        "reason": "permanent_error",
        "error_code": "ERR",
        "error_description": "x" * 2000,
        "attempts": 4,
        "first_seen": "2026-12-06T06:00:00+00:00",
        "consumer": "w-1",
    }


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
    assert all(error.startswith("ResponseError: ") for error in refused.value.failed.values())
    count, reasons = str(refused.value).split(" dead letter(s) not written: ")
    assert count == "3"
    assert sorted(reasons.split("; ")) == sorted(set(refused.value.failed.values()))
    assert len(reasons.split("; ")) == 2  # invalid ID, WRONGTYPE


def test_no_letters_move_nothing(redis_client):
    assert move_to_dead_letters(redis_client, []) == 0
