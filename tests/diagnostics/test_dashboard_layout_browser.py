"""The dashboard as an operator sees it at 1280x800, in headless Chromium, from a realistic state.

Screenshots go to ``test-artifacts/`` (git-ignored); README's docs/dashboard.png is
one of them. What is asserted: no horizontal overflow, the verdict visible
without scrolling, payloads cut to a preview with a link to the whole, pending
and dead rows linked to their orders, a chart with axes and a legend, an
auto-refresh that keeps the scroll position, and no "Requeue all" without dead
letters.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from crmbridge.diagnostics.dashboard_rows import PREVIEW_CHARS
from crmbridge.redis_io import streams
from tests.diagnostics.dashboard_state import fill_redis, make_orders
from tests.diagnostics.helpers import beat

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
DASHBOARD = "/admin/crmbridge/syncrecord/dashboard/"
VIEWPORT = {"width": 1280, "height": 800}
BIG_PAYLOAD = 3 * 1024 * 1024


@pytest.fixture
def dashboard_page(live_server, admin_user, redis_client, sandbox, settings, django_user_model, request):
    settings.BITRIX_ENABLED = False  # the fixture's orders are not published by signals: fill_redis writes the streams
    _users, orders = make_orders(django_user_model)
    settings.BITRIX_ENABLED = True
    state = fill_redis(redis_client, orders, big_payload_bytes=BIG_PAYLOAD)
    browser = request.getfixturevalue("chromium")  # after the database work: Playwright runs an event loop
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/admin/login/?next={DASHBOARD}")
    page.fill("#id_username", "admin@example.com")  # the e-mail works (item 7)
    page.fill("#id_password", "S3cure-pass-1")
    page.click("input[type=submit]")
    page.wait_for_selector("#bitrix-dashboard")
    ARTIFACTS.mkdir(exist_ok=True)
    yield SimpleNamespace(page=page, state=state, base=live_server.url)
    page.close()


def no_horizontal_overflow(page) -> bool:
    return page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")


def test_layout_at_1280x800(dashboard_page):
    page = dashboard_page.page
    page.screenshot(path=str(ARTIFACTS / "dashboard-1280x800.png"))
    page.screenshot(path=str(ARTIFACTS / "dashboard-full.png"), full_page=True)
    # README's picture (docs/dashboard.png is a copy): the summary, the chart, pending and dead letters.
    page.screenshot(
        path=str(ARTIFACTS / "dashboard-readme.png"),
        full_page=True,
        clip={"x": 0, "y": 0, "width": 1280, "height": 1330},
    )

    assert no_horizontal_overflow(page), page.evaluate("document.scrollingElement.scrollWidth")
    verdict = page.locator("#bitrix-verdict").bounding_box()
    assert verdict["y"] >= 0 and verdict["y"] + verdict["height"] <= VIEWPORT["height"]
    assert page.locator("#bitrix-verdict").inner_text().startswith("Needs attention")  # two dead letters
    assert "failures.dead_letters" in page.locator("#bitrix-problems").inner_text()
    for section in ("#bitrix-chart", "#bitrix-pending-operations", "#bitrix-dead-letters", "#bitrix-config"):
        assert page.locator(f'.bitrix-bar a[href="{section}"]').count() == 1  # reachable from the top


def test_payloads_are_previews_with_a_link_to_the_whole(dashboard_page):
    page = dashboard_page.page
    state = dashboard_page.state
    base = dashboard_page.base
    big_id = state.dead_ids[0]

    previews = page.locator(".bitrix-payload").all_inner_texts()
    assert previews and max(map(len, previews)) <= PREVIEW_CHARS + 2
    html_size = page.evaluate("document.documentElement.outerHTML.length")
    assert html_size < 300_000  # a 3 MB payload does not make a 6 MB page
    link = page.locator(f'#bitrix-dead-letters tr[data-id="{big_id}"] a.bitrix-whole')
    assert re.fullmatch(r"whole payload \(3\.0 MB\)", link.inner_text())
    whole = page.request.get(base + link.get_attribute("href"))
    assert whole.status == 200 and len(whole.body()) > BIG_PAYLOAD
    row = page.locator(f'#bitrix-dead-letters tr[data-id="{big_id}"] pre.bitrix-payload').bounding_box()
    assert row["height"] < 200  # wrapped as JSON lines, not character by character


def test_rows_link_to_their_orders_and_first_seen_is_real(dashboard_page):
    page = dashboard_page.page
    state = dashboard_page.state

    pending_links = page.locator("#bitrix-pending-operations a.bitrix-record")
    hrefs = [pending_links.nth(i).get_attribute("href") for i in range(pending_links.count())]
    assert f"/admin/orders/order/{state.pending_order_ids[0]}/change/" in hrefs
    for dead_id, order_id in zip(state.dead_ids, state.dead_order_ids, strict=True):
        row = page.locator(f'#bitrix-dead-letters tr[data-id="{dead_id}"]')
        assert row.locator("a.bitrix-record").get_attribute("href") == f"/admin/orders/order/{order_id}/change/"
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row.locator(".bitrix-first-seen").inner_text())
    page.click(f'#bitrix-dead-letters tr[data-id="{state.dead_ids[1]}"] a.bitrix-record')
    page.wait_for_selector("#order_form")  # the order's admin page


def test_the_chart_has_axes_gridlines_and_a_legend(dashboard_page):
    page = dashboard_page.page
    chart = page.locator("#bitrix-chart svg")

    legend = chart.locator(".bitrix-chart-legend").all_text_contents()
    assert [text.split(":")[0] for text in legend] == ["created", "synced", "retried", "dead"]
    assert all(int(text.split(": ")[1].rstrip("+")) > 0 for text in legend)
    assert chart.locator(".bitrix-chart-axis").count() == 2
    assert chart.locator(".bitrix-chart-grid").count() == 4
    assert chart.locator(".bitrix-chart-xlabel").count() >= 6
    assert chart.locator("polyline").count() == 4
    box = chart.bounding_box()
    assert box["width"] > 900 and box["height"] > 150
    chart.screenshot(path=str(ARTIFACTS / "dashboard-chart.png"))
    page.locator("#bitrix-dead-letters").screenshot(path=str(ARTIFACTS / "dashboard-dead-letters.png"))


def test_auto_refresh_keeps_the_scroll_position(dashboard_page, redis_client):
    page = dashboard_page.page
    page.evaluate("window.scrollTo(0, 900)")
    before = page.locator("#bitrix-unacknowledged").inner_text()

    for i in range(5):  # new work arrives
        redis_client.xadd(streams.operations_stream(), {"v": "1", "entity": "deal", "op": "update", "id": str(i + 1)})
    beat(redis_client, "worker_app-1-4242")
    page.wait_for_function("document.getElementById('bitrix-live').dataset.refreshed >= '1'", timeout=15_000)

    assert page.evaluate("window.scrollY") == 900
    assert int(page.locator("#bitrix-unacknowledged").inner_text()) == int(before) + 5
    page.screenshot(path=str(ARTIFACTS / "dashboard-after-refresh.png"))


def test_requeue_all_is_hidden_without_dead_letters_and_a_failing_portal_is_not_green(dashboard_page, redis_client):
    page = dashboard_page.page
    assert page.locator('button[value="requeue_all"]').count() == 1

    redis_client.delete(streams.dead_letter_stream())
    now = time.time()
    redis_client.set(streams.key("last_failure"), f'{{"at": {now}, "detail": "HTTP 503 from the portal"}}')
    redis_client.set(streams.key("last_success"), f'{{"at": {now - 600}, "detail": "batch"}}')
    beat(redis_client, "worker_app-1-4242")
    page.wait_for_function("document.getElementById('bitrix-live').dataset.refreshed >= '1'", timeout=15_000)

    assert page.locator('button[value="requeue_all"]').count() == 0
    verdict = page.locator("#bitrix-verdict")
    assert verdict.get_attribute("data-level") != "ok"  # every call fails: not a green "running"
    assert "failures.recent" in page.locator("#bitrix-problems").inner_text()
    assert no_horizontal_overflow(page)
