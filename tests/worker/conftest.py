"""Fixtures for worker tests: the Bitrix sandbox over real HTTP."""

from __future__ import annotations

import pytest

from devtools.sandbox.server import SandboxServer
from tests.worker.helpers import kill_stray_workers


@pytest.fixture(autouse=True)
def no_stray_workers():
    """A failing test must not leave worker processes running behind it."""
    yield
    kill_stray_workers()


@pytest.fixture
def sandbox(settings):
    server = SandboxServer(port=0).start()
    settings.BITRIX_WEBHOOK_URL = server.webhook_url
    settings.BITRIX_RATE_LIMIT_PER_SECOND = 1000
    settings.BITRIX_RATE_LIMIT_BURST = 1000
    yield server
    server.stop()
