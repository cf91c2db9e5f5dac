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


@pytest.mark.parametrize("raw", ["2024-06-10T06:13:20", "2024-06-10T09:13:20+03:00"])
def test_an_iso_time_is_read_as_utc_whatever_the_servers_time_zone(settings, raw):
    """The portal's ``ts`` is Unix seconds (UTC); an ISO time without an offset is UTC too, not the server's time."""
    settings.TIME_ZONE = "Europe/Moscow"  # Django sets the process's TZ from it

    assert parse_portal_time(raw).isoformat() == "2024-06-10T06:13:20+00:00"


@pytest.mark.parametrize("raw", ["2000-01-01T00:00:00+00:00", "2200-12-31T23:59:59+00:00"])
def test_the_first_and_last_believable_years_are_read(raw):
    assert parse_portal_time(raw) == datetime.fromisoformat(raw)


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        ("1999-12-31T23:59:59+00:00", "ts is out of range: '1999-12-31T23:59:59+00:00'"),
        ("2201-01-01T00:00:00+00:00", "ts is out of range: '2201-01-01T00:00:00+00:00'"),
        ("0" * 32 + "946684799", f"ts is out of range: {'0' * 32 + '94668479'!r}"),  # cut to 40 characters
    ],
)
def test_a_time_out_of_range_is_refused_with_what_came(raw, detail):
    with pytest.raises(InvalidEvent) as invalid:
        parse_portal_time(raw)

    assert (invalid.value.code, invalid.value.detail) == ("invalid_ts", detail)
