"""The operation message format: what the publisher writes is what the worker reads, and a bad entry says why.

The reason text reaches the dead-letter stream's ``error`` field, where an operator reads it
(tests/worker/test_poison.py follows a bad entry there); these pin the parser itself.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from crmbridge.publishing.messages import SCHEMA_VERSION, InvalidMessage, Operation

GOOD = {"v": "1", "entity": "deal", "op": "update", "id": "42", "ts": "2026-12-06T05:00:00+00:00", "src": "resync"}


def test_the_fields_are_the_documented_ones_and_read_back_unchanged():
    operation = Operation("contact", "create", 7, ts="2026-12-06T05:00:00+00:00", src="admin")

    fields = operation.to_fields()

    assert fields == {"v": "1", "entity": "contact", "op": "create", "id": "7", "ts": "2026-12-06T05:00:00+00:00",
                      "src": "admin"}  # fmt: skip
    assert Operation.from_fields(fields) == operation


def test_a_new_operation_is_stamped_now_in_utc_and_comes_from_a_signal():
    operation = Operation("deal", "create", 1)

    stamped = datetime.fromisoformat(operation.ts)
    assert stamped.utcoffset().total_seconds() == 0
    assert abs((datetime.now(stamped.tzinfo) - stamped).total_seconds()) < 60
    assert operation.src == "signal"


def test_an_entry_without_a_version_is_read_as_the_current_one():
    fields = {key: value for key, value in GOOD.items() if key != "v"}

    assert Operation.from_fields(fields) == Operation("deal", "update", 42, ts=GOOD["ts"], src="resync")
    assert SCHEMA_VERSION == "1"


def test_missing_optional_fields_read_as_empty():
    operation = Operation.from_fields({"entity": "contact", "op": "create", "id": "3"})

    assert (operation.ts, operation.src) == ("", "")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"v": "2"}, "unsupported schema version '2'"),
        ({"v": "V"}, "unsupported schema version 'V'"),
        ({"entity": "lead"}, "unknown entity 'lead'"),
        ({"entity": None}, "unknown entity None"),
        ({"op": "delete"}, "unknown operation 'delete'"),
        ({"op": None}, "unknown operation None"),
        ({"id": "0"}, "invalid local id '0'"),
        ({"id": "x1"}, "invalid local id 'x1'"),
        ({"id": None}, "invalid local id ''"),
    ],
)
def test_a_bad_entry_is_refused_with_what_is_wrong(change, reason):
    fields = {key: value for key, value in (GOOD | change).items() if value is not None}

    with pytest.raises(InvalidMessage) as refused:
        Operation.from_fields(fields)

    assert str(refused.value) == reason
