"""Fixtures for worker tests: the Bitrix sandbox over real HTTP."""

from __future__ import annotations

import pytest

from crmbridge.sandbox.server import SandboxServer


@pytest.fixture
def sandbox(settings):
    server = SandboxServer(port=0).start()
    settings.BITRIX_WEBHOOK_URL = server.webhook_url
    settings.BITRIX_RATE_LIMIT_PER_SECOND = 1000
    settings.BITRIX_RATE_LIMIT_BURST = 1000
    yield server
    server.stop()
