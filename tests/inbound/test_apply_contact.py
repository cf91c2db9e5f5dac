"""``apply_contact`` and ``first_phone`` directly: what is copied, to whom, and what is logged.

Found by mutation testing (docs/mutation.md): the end-to-end contact tests did not pin these.
"""

from __future__ import annotations

import logging

import pytest

from accounts.models import User
from crmbridge.inbound.apply import apply_contact, first_phone, local_id_from_origin

pytestmark = pytest.mark.django_db

KEPT = "[WEBHOOK] Contact phone %r is not a valid phone here; the user's phone is kept"


def test_a_linked_users_name_and_phone_are_copied_and_a_missing_name_is_empty(alice):
    User.objects.filter(pk=alice.pk).update(bitrix_contact_id=7, first_name="Alice")
    contact = {"LAST_NAME": "Liddell", "PHONE": [{"VALUE": "+49 30 1234567"}]}

    assert apply_contact(alice.pk, 7, contact, None) == "name and phone copied (first_name, last_name, phone)"
    alice.refresh_from_db()
    assert (alice.first_name, alice.last_name, alice.phone) == ("", "Liddell", "+49 30 1234567")


def test_only_the_user_named_is_changed_even_when_another_is_linked_to_that_contact(alice, bob):
    """The event was for alice; alice was relinked since. bob, now on contact 7, is not touched."""
    User.objects.filter(pk=alice.pk).update(bitrix_contact_id=8)
    User.objects.filter(pk=bob.pk).update(bitrix_contact_id=7, first_name="Bob")

    assert apply_contact(alice.pk, 7, {"NAME": "Mallory"}, None) == "user no longer linked"
    assert User.objects.get(pk=bob.pk).first_name == "Bob"
    assert User.objects.get(pk=alice.pk).first_name != "Mallory"


@pytest.mark.parametrize("phones", [None, [], "+49 30 1234567", ["+49 30 1234567"]])
def test_no_usable_phone_entry_keeps_the_users_phone(phones):
    assert first_phone({"PHONE": phones}) is None


def test_a_first_entry_without_a_value_is_an_empty_phone():
    assert first_phone({"PHONE": [{"VALUE_TYPE": "WORK"}, {"VALUE": "+7 495 123-45-67"}]}) == ""


def test_the_first_valid_phone_is_taken_as_written():
    assert first_phone({"PHONE": [{"VALUE": " +7 (495) 123-45-67 "}, {"VALUE": "+1 555"}]}) == "+7 (495) 123-45-67"


@pytest.mark.parametrize("value", ["call me", "1" * 200])
def test_an_invalid_phone_is_kept_out_and_logged(caplog, value):
    with caplog.at_level(logging.WARNING, logger="crmbridge.inbound"):
        assert first_phone({"PHONE": [{"VALUE": value}]}) is None

    assert [r.getMessage() for r in caplog.records] == [KEPT % value[:40]]


@pytest.mark.parametrize(
    ("entity", "remote", "expected"),
    [
        ("deal", {"ORIGINATOR_ID": "bitrixsync", "ORIGIN_ID": "order-12"}, 12),
        ("contact", {"ORIGINATOR_ID": "bitrixsync", "ORIGIN_ID": "user-7"}, 7),
        ("deal", {"ORIGINATOR_ID": "other-system", "ORIGIN_ID": "order-12"}, None),  # another system's record
        ("deal", {"ORIGIN_ID": "order-12"}, None),
        ("deal", {"ORIGINATOR_ID": "bitrixsync", "ORIGIN_ID": "order12"}, None),
        ("deal", {"ORIGINATOR_ID": "bitrixsync", "ORIGIN_ID": "user-12"}, None),  # a contact's origin on a deal
        ("deal", {"ORIGINATOR_ID": "bitrixsync", "ORIGIN_ID": "order-x"}, None),
        ("deal", {"ORIGINATOR_ID": "bitrixsync", "ORIGIN_ID": "old-order-12"}, None),
        ("deal", {"ORIGINATOR_ID": "bitrixsync", "ORIGIN_ID": None}, None),
    ],
)
def test_only_an_origin_this_system_wrote_names_a_local_record(settings, entity, remote, expected):
    settings.BITRIX_ORIGINATOR_ID = "bitrixsync"
    assert local_id_from_origin(entity, remote) == expected


def test_names_are_cut_to_the_fields_length_and_a_missing_last_name_is_empty(alice):
    """The user's name fields hold 150 characters (SQLite would store more without complaint)."""
    from datetime import UTC, datetime

    from crmbridge.models import SyncRecord

    User.objects.filter(pk=alice.pk).update(bitrix_contact_id=7, last_name="Smith")
    changed_at = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)

    apply_contact(alice.pk, 7, {"NAME": "N" * 200}, changed_at)

    alice.refresh_from_db()
    assert (alice.first_name, alice.last_name) == ("N" * 150, "")
    # The event's time is remembered for the contact (it orders later events), not for another entity.
    assert SyncRecord.objects.get(entity="contact", local_id=alice.pk).remote_changed_at == changed_at


def test_a_phone_of_exactly_the_longest_length_is_taken():
    longest = "+7 495 123 45 67" + " -" * 8
    assert len(longest) == 32  # accounts.validators.PHONE_MAX_LENGTH

    assert first_phone({"PHONE": [{"VALUE": longest}]}) == longest
    assert first_phone({"PHONE": [{"VALUE": longest + "-"}]}) is None


def test_a_long_last_name_is_cut_to_the_fields_length(alice):
    User.objects.filter(pk=alice.pk).update(bitrix_contact_id=7)

    apply_contact(alice.pk, 7, {"NAME": "Ann", "LAST_NAME": "L" * 200}, None)

    assert User.objects.get(pk=alice.pk).last_name == "L" * 150
