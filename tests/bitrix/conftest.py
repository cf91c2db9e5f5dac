"""Fixtures for the Bitrix client tests: a sandbox portal over real HTTP, a client, a limiter."""

from __future__ import annotations

import secrets

import pytest

from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.rate_limit import RedisRateLimiter


@pytest.fixture
def webhook_code() -> str:
    """A code unique to the test, so that a search of the logs for it means something."""
    return f"sbx-{secrets.token_hex(8)}"


@pytest.fixture
def sandbox_options(webhook_code) -> dict:
    """The shared ``sandbox`` (``tests/conftest.py``) with this test's webhook code."""
    return {"code": webhook_code}


@pytest.fixture
def client(sandbox):
    bitrix = BitrixClient(sandbox.webhook_url, read_timeout=5)
    yield bitrix
    bitrix.close()


@pytest.fixture
def limiter(redis_client):
    return RedisRateLimiter(redis_client, rate=50, burst=10, key="test:ratelimit")


@pytest.fixture
def limited_client(sandbox, limiter):
    bitrix = BitrixClient(sandbox.webhook_url, limiter=limiter, read_timeout=5)
    yield bitrix
    bitrix.close()
