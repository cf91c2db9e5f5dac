"""Bitrix settings are checked by Django's system checks (``manage.py check``)."""

from __future__ import annotations

from django.core import checks


def bitrix_messages() -> list:
    return [m for m in checks.run_checks() if m.id and m.id.startswith("crmbridge.")]


def test_default_settings_pass_the_bitrix_checks():
    assert bitrix_messages() == []


def test_a_malformed_webhook_url_is_reported_without_its_code(settings):
    settings.BITRIX_WEBHOOK_URL = "ftp://portal.example/rest/1/very-secret-code"
    [message] = bitrix_messages()
    assert message.id == "crmbridge.W001" and "BITRIX_WEBHOOK_URL" in message.msg
    assert "very-secret-code" not in message.msg + (message.hint or "")


def test_a_stage_map_that_misses_a_status_is_reported(settings):
    settings.BITRIX_STAGE_MAP = "new=NEW"
    [message] = bitrix_messages()
    assert message.id == "crmbridge.W002" and "confirmed" in message.msg


def test_a_stage_map_that_does_not_parse_is_reported(settings):
    settings.BITRIX_STAGE_MAP = "new"
    [message] = bitrix_messages()
    assert message.id == "crmbridge.W002"
