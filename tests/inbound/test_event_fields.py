"""``InboundEvent.from_fields``: what a ``{prefix}webhooks`` entry must hold, and what an invalid one says.

Found by mutation testing (docs/mutation.md): the schema version's default and the details of an
invalid message (they are the dead letter's description and the worker's ERROR line) were not pinned.
"""

from __future__ import annotations

import pytest

from crmbridge.inbound.events import InboundEvent, InvalidEvent


def test_an_entry_without_a_version_is_read_as_version_one():
    event = InboundEvent.from_fields({"event": "ONCRMDEALUPDATE", "bitrix_id": "4"})

    assert (event.event, event.bitrix_id) == ("ONCRMDEALUPDATE", 4)


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"v": "9", "event": "ONCRMDEALUPDATE", "bitrix_id": "4"}, "unsupported schema version '9'"),
        ({"bitrix_id": "4"}, "unhandled event ''"),
        ({"event": "ONCRMLEADADD", "bitrix_id": "4"}, "unhandled event 'ONCRMLEADADD'"),
    ],
)
def test_an_invalid_entry_says_what_is_wrong(fields, detail):
    with pytest.raises(InvalidEvent) as invalid:
        InboundEvent.from_fields(fields)

    assert (invalid.value.code, invalid.value.detail) == ("invalid_message", detail)
