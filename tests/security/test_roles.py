"""Item 7: staff powers in the API follow Django's model permissions, as the admin's do."""

from __future__ import annotations

import pytest

from orders.models import Order
from tests.conftest import _client_for
from tests.security.conftest import grant

DIAGNOSTICS = ["/bitrix/sync/status", "/bitrix/sync/worker/status", "/metrics"]


@pytest.fixture
def alices_order(alice):
    return Order.objects.create(owner=alice, service_id="welding", quantity=2)


def test_staff_without_permissions_sees_only_own_orders(bare_staff, alices_order):
    client = _client_for(bare_staff)

    assert client.get("/orders").json()["count"] == 0
    assert client.get(f"/orders/{alices_order.pk}").status_code == 404
    assert client.patch(f"/orders/{alices_order.pk}", {"status": "shipped"}, format="json").status_code == 404
    assert Order.objects.get(pk=alices_order.pk).status == "new"


def test_view_permission_reads_every_order_but_changes_none(bare_staff, alices_order):
    client = _client_for(grant(bare_staff, "orders.view_order"))

    assert client.get("/orders").json()["count"] == 1
    assert client.get(f"/orders/{alices_order.pk}").status_code == 200
    response = client.patch(f"/orders/{alices_order.pk}", {"status": "shipped"}, format="json")
    assert response.status_code == 403
    assert response.json()["detail"] == "You may view this order but not change it."
    assert Order.objects.get(pk=alices_order.pk).status == "new"


def test_change_permission_moves_any_order(bare_staff, alices_order):
    client = _client_for(grant(bare_staff, "orders.view_order", "orders.change_order"))

    response = client.patch(f"/orders/{alices_order.pk}", {"status": "shipped", "amount": "10.00"}, format="json")

    assert response.status_code == 200, response.content
    assert Order.objects.get(pk=alices_order.pk).status == "shipped"


@pytest.mark.parametrize("url", DIAGNOSTICS)
def test_diagnostics_need_the_sync_view_permission(bare_staff, url):
    assert _client_for(bare_staff).get(url).status_code == 403
    assert _client_for(grant(bare_staff, "crmbridge.view_syncrecord")).get(url).status_code == 200


@pytest.mark.parametrize("url", DIAGNOSTICS)
def test_diagnostics_with_a_session_follow_the_permission_too(bare_staff, client, url):
    client.force_login(bare_staff)
    assert client.get(url).status_code == 403


def test_a_staff_api_token_reads_metrics(admin_client_api):
    response = admin_client_api.get("/metrics")

    assert response.status_code == 200
    assert b"bitrixsync_redis_up" in response.content


@pytest.mark.parametrize("url", DIAGNOSTICS[:2])
def test_diagnostics_refusals_use_the_specification_envelope(anon_client, alice_client, url):
    for client, status in ((anon_client, 401), (alice_client, 403)):
        response = client.get(url)
        assert response.status_code == status
        body = response.json()
        assert body["success"] is False and body["data"] is None and body["message"]
