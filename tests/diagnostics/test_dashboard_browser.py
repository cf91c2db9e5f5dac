"""The dashboard in headless Chromium: sign in as staff and requeue a dead letter with the button.

Uses Debian's ``/usr/bin/chromium`` through Playwright (never ``playwright
install``; the ``chromium`` fixture is in ``conftest.py``). Without the browser the test
is skipped, except on CI (``CI=true``) where a missing browser is a failure.
"""

from __future__ import annotations

import pytest

from crmbridge.redis_io import streams
from tests.diagnostics.helpers import add_dead_letters

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_staff_requeues_a_dead_letter_from_the_dashboard(live_server, admin_user, redis_client, request):
    # Everything touching the database happens before the browser starts its event loop.
    (dead_id,) = add_dead_letters(redis_client, 1)
    before = redis_client.xlen(streams.operations_stream())
    browser = request.getfixturevalue("chromium")
    page = browser.new_page()
    page.set_default_timeout(15_000)

    page.goto(f"{live_server.url}/admin/login/?next=/admin/crmbridge/syncrecord/dashboard/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "S3cure-pass-1")
    page.click("input[type=submit]")
    page.wait_for_selector("#bitrix-dashboard")
    assert page.locator(f'tr[data-id="{dead_id}"]').count() == 1

    page.click(f'button[value="requeue:{dead_id}"]')
    page.wait_for_selector("#bitrix-confirm")
    page.click("#bitrix-confirm-yes")
    page.wait_for_selector("#bitrix-dashboard")

    assert "Requeued 1 of 1 dead letter(s)." in page.locator("ul.messagelist").inner_text()
    assert page.locator(f'tr[data-id="{dead_id}"]').count() == 0
    assert redis_client.xlen(streams.dead_letter_stream()) == 0
    assert redis_client.xlen(streams.operations_stream()) == before + 1
    assert redis_client.xrevrange(streams.operations_stream(), count=1)[0][1]["requeued_from"] == dead_id
