"""The webhook URL's check and the logging filter that keeps its code out of logs (found by mutation testing)."""

from __future__ import annotations

import logging
import time

import pytest
from django.core.exceptions import ImproperlyConfigured

from crmbridge.bitrix.webhook_url import RedactSecretsFilter, validate_webhook_url

URL = "https://example.bitrix24.ru/rest/1/s3cr3t-c0de/"


def test_validate_normalises_and_names_the_setting_never_the_secret():
    assert validate_webhook_url("") == ""
    assert validate_webhook_url(" https://example.bitrix24.ru/rest/1/s3cr3t-c0de ") == URL
    with pytest.raises(ImproperlyConfigured) as default_name:
        validate_webhook_url("https://example.bitrix24.ru/s3cr3t-c0de")
    with pytest.raises(ImproperlyConfigured) as given_name:
        validate_webhook_url("ftp://x/rest/1/s3cr3t-c0de/", name="BITRIX_MANAGER_WEBHOOK_URL")

    assert str(default_name.value).startswith("BITRIX_WEBHOOK_URL must look like https://")
    assert str(given_name.value).startswith("BITRIX_MANAGER_WEBHOOK_URL must look like")
    assert "s3cr3t" not in str(default_name.value) + str(given_name.value)


def record_of(log) -> logging.LogRecord:
    """The record ``log(logger)`` makes, after the filter (which must let it through)."""
    records: list[logging.LogRecord] = []
    logger = logging.getLogger(f"test.redact.{time.monotonic_ns()}")
    logger.propagate = False
    logger.addFilter(RedactSecretsFilter())
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    log(logger)
    (record,) = records
    return record


def test_a_traceback_with_the_code_is_logged_redacted_in_the_message():
    def log(logger):
        try:
            raise ConnectionError(f"cannot reach {URL}crm.deal.add")
        except ConnectionError:
            logger.exception("Call to %s failed", f"{URL}batch")

    record = record_of(log)

    assert (record.exc_info, record.exc_text, record.args) == (None, None, None)
    assert record.msg.startswith("Call to https://example.bitrix24.ru/rest/1/****/batch failed\nTraceback")
    assert "ConnectionError: cannot reach https://example.bitrix24.ru/rest/1/****/crm.deal.add" in record.msg
    assert "s3cr3t" not in logging.Formatter().format(record)


def test_an_error_logged_without_being_raised_is_redacted_too():
    """Found by mutation testing: an error kept, not raised (a batch command's), has no traceback but a text."""
    error = ConnectionError(f"cannot reach {URL}crm.deal.add")

    record = record_of(lambda logger: logger.warning("Command failed", exc_info=error))

    assert (record.exc_info, record.exc_text) == (None, None)
    assert (
        record.msg
        == "Command failed\nConnectionError: cannot reach https://example.bitrix24.ru/rest/1/****/crm.deal.add"
    )


def test_a_clean_record_is_let_through_unchanged():
    record = record_of(lambda logger: logger.warning("Worker %s started", "w-1"))

    assert (record.msg, record.args) == ("Worker %s started", ("w-1",))


def test_parsing_keeps_the_parts_and_remembers_the_code_for_redaction():
    """Found by mutation testing: the parts and the remembered code were not checked."""
    from crmbridge.bitrix.webhook_url import parse_webhook_url, redact

    hook = parse_webhook_url("https://parts.bitrix24.ru/rest/12/parts-c0de-9/")

    assert (hook.portal, hook.user_id, hook.code) == ("https://parts.bitrix24.ru", "12", "parts-c0de-9")
    assert redact("code parts-c0de-9 then parts-c0de-9 again") == "code **** then **** again"
    assert redact("nothing secret here") == "nothing secret here"


def test_a_bad_port_names_the_setting():
    with pytest.raises(ImproperlyConfigured) as bad:
        validate_webhook_url("https://example.bitrix24.ru:99999/rest/1/s3cr3t-c0de/", name="BITRIX_X")

    assert str(bad.value).startswith("BITRIX_X must look like https://")


@pytest.mark.parametrize(("secret", "remembered"), [("abcd", True), ("abc", False), ("", False)])
def test_secrets_of_four_characters_or_more_are_remembered(secret, remembered):
    from crmbridge.bitrix.webhook_url import _KNOWN_SECRETS, remember_secret

    before = set(_KNOWN_SECRETS)
    try:
        remember_secret(secret)
        assert (secret in _KNOWN_SECRETS) is remembered
    finally:
        _KNOWN_SECRETS.intersection_update(before)
