"""Fixtures for inbound events: the configured token, a form-posting helper, the webhooks stream."""

from __future__ import annotations

import signal

import pytest

from crmbridge.redis_io import streams

TOKEN = "inbound-token-7f3a9c"
URL = "/bitrix/webhook"


def event_form(event: str = "ONCRMDEALUPDATE", deal_id="410", *, token: str | None = TOKEN, **extra) -> dict:
    """A form as the portal sends it (``None`` leaves a key out)."""
    form = {
        "event": event,
        "event_handler_id": "7",
        "data[FIELDS][ID]": deal_id,
        "ts": "1718000000",
        "auth[domain]": "example.bitrix24.ru",
        "auth[client_endpoint]": "https://example.bitrix24.ru/rest/",
        "auth[server_endpoint]": "https://oauth.bitrix.info/rest/",
        "auth[member_id]": "a223c6b3710f85df22e9377d6c4f7553",
        "auth[application_token]": token,
        **extra,
    }
    return {key: value for key, value in form.items() if value is not None}


@pytest.fixture(autouse=True)
def inbound_token(settings):
    settings.BITRIX_INBOUND_TOKEN = TOKEN
    settings.BITRIX_INBOUND_CONTACT_UPDATES = False
    return TOKEN


@pytest.fixture(autouse=True)
def restore_signal_handlers():
    """A worker run in the main thread installs SIGTERM/SIGINT handlers and leaves them: put them back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture
def webhook_entries(redis_client):
    """A function returning the fields of every entry in ``{prefix}webhooks``."""

    def read() -> list[dict]:
        return [fields for _, fields in redis_client.xrange(streams.webhooks_stream())]

    return read


@pytest.fixture
def operation_entries(redis_client):
    """A function returning the fields of every entry in ``{prefix}operations``."""

    def read() -> list[dict]:
        return [fields for _, fields in redis_client.xrange(streams.operations_stream())]

    return read


@pytest.fixture
def sandbox_options(live_server) -> dict:
    """The sandbox (``tests/conftest.py``) sends its deal events to our endpoint on the live server."""
    return {"handler_url": live_server.url + URL, "application_token": TOKEN}
