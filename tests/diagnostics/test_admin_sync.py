"""Orders and users in the admin: Bitrix links, sync states, "resync selected"; read-only sync tables."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crmbridge.models import OutboxEntry, SyncRecord
from orders.models import Order

pytestmark = pytest.mark.django_db

ORDERS = "/admin/orders/order/"
USERS = "/admin/accounts/user/"


def order_for(owner, **fields) -> Order:
    return Order.objects.create(owner=owner, service_id="cnc-milling", quantity=1, **fields)


def test_order_list_links_to_the_deal_in_the_portal(staff_browser, alice, secret_webhook):
    order = order_for(alice, bitrix_deal_id=456)

    page = staff_browser.get(ORDERS).content.decode()

    assert 'href="https://example.bitrix24.test/crm/deal/details/456/"' in page
    assert secret_webhook not in page
    assert order.pk


def test_portal_url_setting_wins_and_users_link_to_contacts(staff_browser, alice, settings, secret_webhook):
    settings.BITRIX_PORTAL_URL = "https://crm.example.com/"
    alice.bitrix_contact_id = 77
    alice.save()

    page = staff_browser.get(USERS).content.decode()

    assert 'href="https://crm.example.com/crm/contact/details/77/"' in page


def test_without_a_portal_the_id_is_plain_text(staff_browser, alice, settings):
    settings.BITRIX_WEBHOOK_URL = ""
    order_for(alice, bitrix_deal_id=456)

    page = staff_browser.get(ORDERS).content.decode()

    assert "/crm/deal/details/456/" not in page


def test_sync_states_are_shown_with_the_last_error(staff_browser, alice):
    synced, waiting, failed = (order_for(alice, bitrix_deal_id=1), order_for(alice), order_for(alice))
    SyncRecord.objects.update_or_create(entity="deal", local_id=synced.pk, defaults={"state": "synced"})
    SyncRecord.objects.update_or_create(entity="deal", local_id=waiting.pk, defaults={"state": "waiting"})
    SyncRecord.objects.update_or_create(
        entity="deal", local_id=failed.pk, defaults={"state": "failed", "last_error": "ERROR_CORE: invalid e-mail"}
    )

    response = staff_browser.get(ORDERS)
    rows = {obj.pk: obj for obj in response.context["cl"].result_list}
    admin = response.context["cl"].model_admin

    assert "synced" in admin.sync_state(rows[synced.pk])
    assert "waiting" in admin.sync_state(rows[waiting.pk])
    assert "failed: ERROR_CORE: invalid e-mail" in admin.sync_state(rows[failed.pk])


def test_the_order_list_does_not_query_per_row(staff_browser, alice):
    def queries_for_list() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert staff_browser.get(ORDERS).status_code == 200
        return len(captured)

    order_for(alice)
    few = queries_for_list()
    for _ in range(15):
        order = order_for(alice)
        SyncRecord.objects.update_or_create(entity="deal", local_id=order.pk, defaults={"state": "failed"})

    assert queries_for_list() == few


def test_resync_selected_queues_and_reports(staff_browser, alice, bob):
    orders = [order_for(alice), order_for(bob, bitrix_deal_id=9)]
    before = OutboxEntry.objects.count()

    response = staff_browser.post(
        ORDERS, {"action": "resync_selected", "_selected_action": [o.pk for o in orders]}, follow=True
    )

    assert [str(m) for m in response.context["messages"]] == ["Queued 2 deal operation(s) for Bitrix24."]
    assert OutboxEntry.objects.count() - before <= 2  # published at once when Redis answers


def test_resync_selected_on_users(staff_browser, alice):
    response = staff_browser.post(USERS, {"action": "resync_selected", "_selected_action": [alice.pk]}, follow=True)

    assert [str(m) for m in response.context["messages"]] == ["Queued 1 contact operation(s) for Bitrix24."]


@pytest.mark.parametrize("model", ["syncrecord", "outboxentry"])
def test_sync_tables_are_read_only(staff_browser, alice, model):
    order = order_for(alice)
    SyncRecord.objects.update_or_create(entity="deal", local_id=order.pk, defaults={"state": "waiting"})

    assert staff_browser.get(f"/admin/crmbridge/{model}/").status_code == 200
    assert staff_browser.get(f"/admin/crmbridge/{model}/add/").status_code == 403


def test_sync_record_list_links_to_the_dashboard(staff_browser):
    assert (
        "/admin/crmbridge/syncrecord/dashboard/" in staff_browser.get("/admin/crmbridge/syncrecord/").content.decode()
    )


# One Bitrix column whose link opens the record in the portal (the sandbox plays the portal). ----


def bitrix_column_headers(page: str) -> list[str]:
    import re

    return [h for h in re.findall(r'<th scope="col" class="column-(\w+)', page) if "bitrix" in h or "sync" in h]


def test_order_and_user_lists_have_one_bitrix_column(staff_browser, alice, secret_webhook):
    order_for(alice, bitrix_deal_id=456)

    assert bitrix_column_headers(staff_browser.get(ORDERS).content.decode()) == ["bitrix"]
    assert bitrix_column_headers(staff_browser.get(USERS).content.decode()) == ["bitrix"]


def test_the_link_opens_the_deal_and_the_contact_in_the_portal(staff_browser, alice, sandbox):
    import re
    import urllib.request

    from crmbridge.bitrix.client import BitrixClient

    client = BitrixClient.from_settings()
    contact_id = client.call("crm.contact.add", {"fields": {"NAME": "Alice", "LAST_NAME": "Tester"}})
    deal_id = client.call("crm.deal.add", {"fields": {"TITLE": "Order 1: CNC milling", "CONTACT_ID": contact_id}})
    client.close()
    order_for(alice, bitrix_deal_id=deal_id)
    type(alice).objects.filter(pk=alice.pk).update(bitrix_contact_id=contact_id)

    for admin_list, expected in ((ORDERS, "Order 1: CNC milling"), (USERS, "Alice")):
        page = staff_browser.get(admin_list).content.decode()
        (link,) = set(re.findall(r'href="(http://127\.0\.0\.1:\d+/crm/\w+/details/\d+/)"', page))
        with urllib.request.urlopen(link, timeout=5) as response:
            body = response.read().decode()
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/html")
        assert expected in body
        assert sandbox.webhook_url.split("/rest/")[1].split("/")[1] not in body  # never the webhook code


def test_the_portal_page_of_a_missing_record_is_a_404(sandbox):
    import urllib.error
    import urllib.request

    base = sandbox.webhook_url.split("/rest/")[0]
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{base}/crm/deal/details/99999/", timeout=5)
    assert missing.value.code == 404
