"""E-mail and phone values as the portal's duplicate search compares them (``crmbridge.bitrix.communications``)."""

from __future__ import annotations

import pytest

from crmbridge.bitrix.communications import normal, normal_email, normal_phone


@pytest.mark.parametrize(
    ("value", "normalised"),
    [(" Alice@X.com ", "alice@x.com"), ("ANNA@EXAMPLE.COM", "anna@example.com"), ("", ""), (None, "")],
)
def test_an_email_is_compared_trimmed_in_lower_case(value, normalised):
    assert normal_email(value) == normalised


@pytest.mark.parametrize(
    ("value", "normalised"),
    [
        ("+7 (812) 555-01-02 #4048", "78125550102"), ("+7 812 555 01 02 ext. 12", "78125550102"),
        ("+7 812 555 01 02 x12", "78125550102"), ("8-812-555-01-02 доб. 7", "88125550102"),
        ("+78125550102, 3", "78125550102"), ("+78125550102;3", "78125550102"), ("", ""), (None, ""),
    ],
)  # fmt: skip
def test_a_phone_is_compared_by_its_digits_without_the_extension(value, normalised):
    assert normal_phone(value) == normalised


def test_the_kind_picks_the_rule():
    assert (normal("EMAIL", " A@B.co "), normal("PHONE", "+1 (555) 0100")) == ("a@b.co", "15550100")
