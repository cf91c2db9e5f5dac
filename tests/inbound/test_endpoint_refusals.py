"""``POST /bitrix/webhook``: the refusals' exact answers and WARNING lines, the body limit's edge.

Found by mutation testing (docs/mutation.md): the token checks' details and log lines, the
optional throttle of ``check_token``, the throttled answer, the answers to unreadable bodies and
the 64 KB limit itself were not pinned.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

import pytest

from crmbridge.inbound.views import MAX_BODY_BYTES, Refused, check_token
from tests.inbound.conftest import URL, event_form

pytestmark = pytest.mark.urls("tests.inbound.urls")

FORM_TYPE = "application/x-www-form-urlencoded"


def post(client, form: dict, **extra):
    return client.post(URL, data=urlencode(form), content_type=FORM_TYPE, **extra)


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "crmbridge.inbound" and r.levelno == logging.WARNING]


def test_an_empty_token_setting_answers_which_setting_to_fill_in_and_warns(client, settings, caplog):
    settings.BITRIX_INBOUND_TOKEN = ""

    with caplog.at_level(logging.WARNING, logger="crmbridge.inbound"):
        response = post(client, event_form())

    assert (response.status_code, response.json()) == (
        503,
        {"error": "inbound_disabled", "detail": "inbound events are disabled: BITRIX_INBOUND_TOKEN is not set"},
    )
    assert warnings(caplog) == [
        "[WEBHOOK] Refused an event: BITRIX_INBOUND_TOKEN is empty, inbound events are disabled"
    ]


def test_a_missing_token_names_the_field(client):
    response = post(client, event_form(token=None))

    assert response.json() == {"error": "missing_token", "detail": "auth[application_token] is required"}


def test_a_wrong_token_names_the_field_and_warns(client, caplog):
    with caplog.at_level(logging.WARNING, logger="crmbridge.inbound"):
        response = post(client, event_form(token="guess"))

    assert response.json() == {"error": "invalid_token", "detail": "auth[application_token] does not match"}
    assert warnings(caplog) == ["[WEBHOOK] Refused an event with a wrong application token"]


def test_the_token_check_without_a_throttle_still_refuses():
    """``check_token``'s ``refusals`` is optional: without one, a wrong token is a 403 all the same."""
    with pytest.raises(Refused) as refused:
        check_token("guess")

    assert (refused.value.status, refused.value.code) == (403, "invalid_token")


def test_a_body_of_exactly_the_limit_is_read(client, webhook_entries):
    form = event_form(**{"data[FIELDS][TITLE]": ""})
    form["data[FIELDS][TITLE]"] = "x" * (MAX_BODY_BYTES - len(urlencode(form)))
    assert len(urlencode(form)) == MAX_BODY_BYTES

    assert post(client, form).json()["status"] == "queued"
    assert post(client, {**form, "data[FIELDS][TITLE]": form["data[FIELDS][TITLE]"] + "x"}).status_code == 413


def test_a_throttled_address_is_told_when_to_come_back(client, settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "webhook_refused": "2/min"}
    assert [post(client, event_form(token="guess")).status_code for _ in range(2)] == [403, 403]

    response = post(client, event_form())

    assert (response.status_code, response.json()) == (
        429,
        {"error": "throttled", "detail": "too many refused tokens from this address; try again later"},
    )
    assert int(response["Retry-After"]) > 0


@pytest.mark.parametrize(
    ("send", "status", "answer"),
    [
        (
            lambda client: post(client, event_form(**{"data[FIELDS][TITLE]": "x" * MAX_BODY_BYTES})),
            413,
            {"error": "body_too_large", "detail": "the body is larger than 65536 bytes"},
        ),
        (
            lambda client: client.post(URL, data=event_form(), content_type="application/json"),
            415,
            {"error": "unsupported_media_type", "detail": "send application/x-www-form-urlencoded, as the portal does"},
        ),
        (
            lambda client: post(client, event_form(**{f"f{i}": "1" for i in range(1500)})),
            400,
            {"error": "malformed_body", "detail": "the form cannot be read: TooManyFieldsSent"},
        ),
    ],
    ids=["too-large", "not-a-form", "too-many-fields"],
)
def test_an_unreadable_body_is_refused_with_its_reason(client, webhook_entries, send, status, answer):
    response = send(client)

    assert (response.status_code, response.json()) == (status, answer)
    assert webhook_entries() == []
