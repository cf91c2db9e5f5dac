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


def test_a_clean_record_is_let_through_unchanged():
    record = record_of(lambda logger: logger.warning("Worker %s started", "w-1"))

    assert (record.msg, record.args) == ("Worker %s started", ("w-1",))
