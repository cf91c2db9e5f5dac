"""``InboundEvent.from_fields``: what a ``{prefix}webhooks`` entry must hold, and what an invalid one says.

Found by mutation testing (docs/mutation.md): an entry read back as queued, the defaults and the details of an
invalid message (they are the dead letter's description and the worker's ERROR line) were not pinned.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crmbridge.inbound.events import InboundEvent, InvalidEvent, parse_portal_time


def test_an_entry_is_read_back_as_it_was_queued():
    queued = InboundEvent(
        "ONCRMDEALUPDATE",
        4,
        ts=datetime(2026, 12, 6, 6, 0, tzinfo=UTC),
        received_at=datetime(2026, 12, 6, 6, 0, 1, tzinfo=UTC),
        domain="example.bitrix24.ru",
        src="pull",
    )

    assert InboundEvent.from_fields(queued.to_fields()) == queued


def test_an_entry_without_domain_and_source_has_empty_ones():
    event = InboundEvent.from_fields({"event": "ONCRMDEALUPDATE", "bitrix_id": "4"})

    assert (event.domain, event.src) == ("", "")


def test_an_entry_without_a_version_is_read_as_version_one():
    event = InboundEvent.from_fields({"event": "ONCRMDEALUPDATE", "bitrix_id": "4"})

    assert (event.event, event.bitrix_id) == ("ONCRMDEALUPDATE", 4)


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"v": "9", "event": "ONCRMDEALUPDATE", "bitrix_id": "4"}, "unsupported schema version '9'"),
        ({"bitrix_id": "4"}, "unhandled event ''"),
        ({"event": "ONCRMLEADADD", "bitrix_id": "4"}, "unhandled event 'ONCRMLEADADD'"),
        ({"event": "E" * 70, "bitrix_id": "4"}, f"unhandled event {'E' * 64!r}"),  # cut to 64 characters
    ],
)
def test_an_invalid_entry_says_what_is_wrong(fields, detail):
    with pytest.raises(InvalidEvent) as invalid:
        InboundEvent.from_fields(fields)

    assert (invalid.value.code, invalid.value.detail) == ("invalid_message", detail)


def test_the_receipt_time_is_queued_in_utc():
    assert InboundEvent("ONCRMDEALUPDATE", 4).to_fields()["received_at"].endswith("+00:00")


def test_a_fractional_unix_time_is_read():
    assert parse_portal_time("1718000000.5") == datetime(2024, 6, 10, 6, 13, 20, 500000, tzinfo=UTC)
