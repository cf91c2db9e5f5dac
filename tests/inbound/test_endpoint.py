"""``POST /bitrix/webhook``: what is refused, what is ignored, and exactly what is queued."""

from __future__ import annotations

import logging
from urllib.parse import urlencode

import pytest

from crmbridge.redis_io.connection import reset_clients
from devtools.testing.ports import free_port
from tests.inbound.conftest import TOKEN, URL, event_form

pytestmark = pytest.mark.urls("tests.inbound.urls")

FORM_TYPE = "application/x-www-form-urlencoded"


def post(client, form: dict):
    return client.post(URL, data=urlencode(form), content_type=FORM_TYPE)


def test_a_deal_update_is_queued_with_the_small_message_and_never_the_token(client, webhook_entries):
    response = post(client, event_form("ONCRMDEALUPDATE", "410"))

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "queued"
    (entry,) = webhook_entries()
    assert entry["v"] == "1"
    assert entry["event"] == "ONCRMDEALUPDATE"
    assert entry["entity"] == "deal"
    assert entry["bitrix_id"] == "410"
    assert entry["ts"] == "2024-06-10T06:13:20+00:00"
    assert entry["domain"] == "example.bitrix24.ru"
    assert entry["src"] == "portal"
    assert entry["received_at"]
    assert TOKEN not in str(entry)
    assert response.json()["message_id"]


@pytest.mark.parametrize("event", ["ONCRMDEALADD", "ONCRMDEALDELETE", "oncrmdealupdate"])
def test_every_deal_event_is_queued(client, webhook_entries, event):
    assert post(client, event_form(event, "7")).status_code == 200
    assert webhook_entries()[0]["event"] == event.upper()


def test_multipart_is_accepted_too(client, webhook_entries):
    response = client.post(URL, data=event_form("ONCRMDEALUPDATE", "12"))  # the test client's default: multipart

    assert response.status_code == 200, response.content
    assert webhook_entries()[0]["bitrix_id"] == "12"


def test_an_event_without_ts_is_queued_with_an_empty_ts(client, webhook_entries):
    assert post(client, event_form(ts=None)).status_code == 200
    assert webhook_entries()[0]["ts"] == ""


def test_a_missing_token_is_401_and_queues_nothing(client, webhook_entries):
    response = post(client, event_form(token=None))

    assert response.status_code == 401
    assert response.json()["error"] == "missing_token"
    assert webhook_entries() == []


@pytest.mark.parametrize("token", [TOKEN + "x", TOKEN.upper(), "ключ", TOKEN[:-1]])
def test_a_wrong_token_is_403_and_queues_nothing(client, webhook_entries, token, caplog):
    response = post(client, event_form(token=token))

    assert response.status_code == 403
    assert response.json()["error"] == "invalid_token"
    assert "Retry-After" not in response  # only a throttled refusal says when to come back
    assert webhook_entries() == []
    assert TOKEN not in caplog.text


def test_an_empty_token_setting_disables_inbound_events_with_503(client, webhook_entries, settings):
    settings.BITRIX_INBOUND_TOKEN = ""

    response = post(client, event_form(token=""))

    assert response.status_code == 503
    assert "BITRIX_INBOUND_TOKEN" in response.json()["detail"]
    assert webhook_entries() == []


def test_an_unhandled_event_is_acknowledged_and_not_queued(client, webhook_entries, caplog):
    with caplog.at_level(logging.DEBUG, logger="crmbridge.inbound"):
        response = post(client, event_form("ONCRMLEADUPDATE", "5"))

    assert response.status_code == 200
    assert response.json() == {"status": "ignored"}
    assert webhook_entries() == []
    assert "[WEBHOOK] Ignored event ONCRMLEADUPDATE (not handled)" in [r.getMessage() for r in caplog.records]


def test_a_wrong_token_is_refused_even_for_an_unhandled_event(client):
    assert post(client, event_form("ONCRMLEADUPDATE", token="nope")).status_code == 403


def test_contact_events_are_ignored_unless_contact_updates_are_on(client, webhook_entries, settings):
    assert post(client, event_form("ONCRMCONTACTUPDATE", "55")).json() == {"status": "ignored"}
    assert webhook_entries() == []

    settings.BITRIX_INBOUND_CONTACT_UPDATES = True
    assert post(client, event_form("ONCRMCONTACTUPDATE", "55")).json()["status"] == "queued"
    assert webhook_entries()[0]["entity"] == "contact"


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"event": None}, "missing_event"),
        ({"event": ""}, "missing_event"),
        ({"event": "ONCRM DEAL;UPDATE"}, "invalid_event"),
        ({"event": "ON" + "X" * 100}, "invalid_event"),
        ({"data[FIELDS][ID]": None}, "missing_id"),
        ({"data[FIELDS][ID]": "abc"}, "invalid_id"),
        ({"data[FIELDS][ID]": "-4"}, "invalid_id"),
        ({"data[FIELDS][ID]": "0"}, "invalid_id"),
        ({"data[FIELDS][ID]": "4.5"}, "invalid_id"),
        ({"data[FIELDS][ID]": "١٢"}, "invalid_id"),  # Arabic-Indic digits: isdigit() but not an ID
        ({"data[FIELDS][ID]": "9" * 19}, "invalid_id"),
        ({"ts": "yesterday"}, "invalid_ts"),
        ({"ts": "99999999999999999999"}, "invalid_ts"),
        ({"auth[domain]": "x" * 300}, "invalid_domain"),
        ({"auth[domain]": "evil.example\nERROR: forged log line"}, "invalid_domain"),
    ],
)
def test_malformed_events_are_400_with_a_json_error(client, webhook_entries, changes, error):
    form = event_form()
    form.update(changes)
    response = post(client, {key: value for key, value in form.items() if value is not None})

    assert response.status_code == 400
    assert response.json()["error"] == error
    assert response.json()["detail"]
    assert webhook_entries() == []


def test_an_absurdly_large_body_is_413_before_it_is_parsed(client, webhook_entries):
    response = post(client, event_form(**{"data[FIELDS][TITLE]": "x" * 100_000}))

    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    assert webhook_entries() == []


def test_too_many_fields_is_400(client, webhook_entries):
    response = post(client, event_form(**{f"f{i}": "1" for i in range(1500)}))

    assert response.status_code == 400
    assert response.json()["error"] == "malformed_body"


def test_json_is_415(client, webhook_entries):
    response = client.post(URL, data=event_form(), content_type="application/json")

    assert response.status_code == 415
    assert webhook_entries() == []


def test_only_post_is_allowed(client):
    assert client.get(URL).status_code == 405


def test_redis_down_is_503_and_logs_that_the_event_is_lost(client, settings, caplog):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    reset_clients()

    with caplog.at_level(logging.ERROR, logger="crmbridge.inbound"):
        response = post(client, event_form("ONCRMDEALUPDATE", "410"))

    assert response.status_code == 503
    assert response.json()["error"] == "queue_unavailable"
    # The operator's guide quotes this line: all of it is the contract.
    assert [r.getMessage() for r in caplog.records if r.name.startswith("crmbridge.inbound")] == [
        "[WEBHOOK] Redis unavailable (ConnectionError): ONCRMDEALUPDATE for deal 410 is LOST (the portal does not "
        "resend events). An order's status may now be stale; once Redis is back, run `python manage.py "
        "bitrix_pull_deals` to re-apply the current stage of every linked deal."
    ]


@pytest.mark.parametrize(
    ("changes", "detail"),
    [({"event": ""}, "event is required"),
     ({"event": "ON" + "X" * 63}, "event must be an event name such as ONCRMDEALUPDATE"),  # 65 characters
     ({"auth[domain]": "evil example"}, "auth[domain] must be a host name, at most 255 chars"),
     ({"auth[domain]": "x" * 256}, "auth[domain] must be a host name, at most 255 chars")],
)  # fmt: skip
def test_a_refusal_says_what_the_field_must_be(client, webhook_entries, changes, detail):
    """Found by mutation testing: the details and the limits' edges were not pinned."""
    response = post(client, {**event_form(), **changes})

    assert (response.status_code, response.json()["detail"]) == (400, detail)
    assert webhook_entries() == []


def test_names_and_domains_at_their_limits_are_accepted(client, webhook_entries):
    long_name = "ON_" + "X" * 61  # 64 characters, with an underscore: a valid name, not one we handle
    assert post(client, event_form(long_name)).json() == {"status": "ignored"}

    assert post(client, event_form(**{"auth[domain]": "d" * 255})).status_code == 200
    assert post(client, event_form(**{"auth[domain]": None})).status_code == 200

    assert [entry["domain"] for entry in webhook_entries()] == ["d" * 255, ""]


def test_an_invalid_id_is_quoted_in_the_detail_cut_to_forty_characters(client, webhook_entries):
    """The detail shows what was sent, but never more than 40 characters of it (it is echoed and logged)."""
    form = event_form()
    form["data[FIELDS][ID]"] = "x" * 39 + "YZ"

    response = post(client, form)

    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.endswith(repr("x" * 39 + "Y")) and "YZ" not in detail
