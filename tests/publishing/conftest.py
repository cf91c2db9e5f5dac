"""Publishing tests: sync enabled, a fresh publishing client and circuit breaker per test."""

import logging

import pytest

from crmbridge.publishing.outbox import sent_rows
from crmbridge.publishing.publisher import reset_publish_clients


@pytest.fixture(autouse=True)
def fresh_publisher(settings, caplog):
    caplog.set_level(logging.INFO)  # the [QUEUE] lines, whatever LOG_LEVEL says
    settings.BITRIX_ENABLED = True
    # These tests count one stream entry per queued change; coalescing has its own tests
    # (tests/worker/test_coalescing.py).
    settings.BITRIX_PUBLISH_COALESCE = False
    reset_publish_clients()
    sent_rows.take()  # deferred deletes belong to the test that made them
    yield
    reset_publish_clients()
    sent_rows.take()
