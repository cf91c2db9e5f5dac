"""Item 1: the development web app listens on loopback only, and the debug page shows no secret."""

from __future__ import annotations

import sys

import pytest
from django.test import RequestFactory
from django.views.debug import technical_500_response

from bitrixsync.dev_stack import DevStack

SECRETS = {
    "BITRIX_WEBHOOK_URL": "https://portal.example/rest/1/webhookSecretCode77/",
    "BITRIX_SANDBOX_CODE": "sandboxSecretCode88",
    "BITRIX_INBOUND_TOKEN": "inboundSecretToken99",
    "BITRIX_METRICS_TOKEN": "metricsSecretToken11",
    "REDIS_URL": "redis://:redisSecretPass22@127.0.0.1:6399/0",
    "REDIS_PASSWORD": "redisSecretPass22",
    "DATABASE_URL": "postgres://app:dbSecretPass33@127.0.0.1:5432/app",
}
NEEDLES = ("webhookSecretCode77", "sandboxSecretCode88", "inboundSecretToken99", "metricsSecretToken11",
           "redisSecretPass22", "dbSecretPass33")  # fmt: skip


def _fail_with_secrets_in_locals(url: str, webhook: str):
    redis_url = url  # noqa: F841 - a local variable the traceback shows
    raise RuntimeError("boom")


def test_technical_500_page_shows_no_secret(settings, monkeypatch):
    settings.DEBUG = True
    for name, value in SECRETS.items():
        setattr(settings, name, value)
        monkeypatch.setenv(name, value)
    request = RequestFactory().get("/orders", HTTP_X_TRACE=SECRETS["REDIS_URL"], **SECRETS)  # META as runserver has
    try:
        _fail_with_secrets_in_locals(SECRETS["REDIS_URL"], SECRETS["BITRIX_WEBHOOK_URL"])
    except RuntimeError:
        html = technical_500_response(request, *sys.exc_info()).content.decode()

    assert "boom" in html  # the page is the real one
    leaked = [needle for needle in NEEDLES if needle in html]
    assert leaked == []


@pytest.mark.parametrize(("env", "expected"), [({}, "127.0.0.1"), ({"WEB_HOST": "0.0.0.0"}, "0.0.0.0")])
def test_dev_web_app_binds_loopback_unless_told(monkeypatch, tmp_path, env, expected):
    monkeypatch.delenv("WEB_HOST", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    stack = DevStack(out=sys.stdout, var_dir=tmp_path)

    assert stack.runserver_args()[-2:] == [f"{expected}:{stack.web_port}", "--noreload"]
