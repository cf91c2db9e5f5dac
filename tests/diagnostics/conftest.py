"""Fixtures for diagnostics tests: the Bitrix sandbox over HTTP and signed-in staff."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.test import Client

# Recognisable, so that tests can search every answer for it.
WEBHOOK_CODE = "zq7SECRETwebhook93xk"


@pytest.fixture
def sandbox_options() -> dict:
    """The shared ``sandbox`` (``tests/conftest.py``), with the recognisable webhook code."""
    return {"code": WEBHOOK_CODE}


@pytest.fixture
def secret_webhook(settings):
    """A webhook URL with a recognisable code, pointing nowhere useful."""
    settings.BITRIX_WEBHOOK_URL = f"https://example.bitrix24.test/rest/1/{WEBHOOK_CODE}/"
    return WEBHOOK_CODE


@pytest.fixture
def staff_browser(admin_user) -> Client:
    """A Django test client signed in as the superuser ``admin``."""
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def plain_staff(db, django_user_model):
    """Staff without any permission on the sync."""
    return django_user_model.objects.create_user(
        username="carol", email="carol@example.com", password="S3cure-pass-1", is_staff=True
    )


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


@pytest.fixture
def chromium():
    """Debian's Chromium through Playwright (never ``playwright install``); skipped without it, except on CI."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: apt-get install -y chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()
