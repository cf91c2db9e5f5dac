"""The admin pages for users and orders load, search and filter (an operator's tool)."""

from __future__ import annotations

import pytest

from orders.models import Order

pytestmark = pytest.mark.django_db


@pytest.fixture
def orders(alice, bob):
    return [
        Order.objects.create(owner=alice, service_id="welding", quantity=1, bitrix_deal_id=501),
        Order.objects.create(owner=bob, service_id="cnc-milling", quantity=2, status="done"),
    ]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?q=alice",
        "?q=501",
        "?q=not-a-number",
        "?status__exact=done",
        "?service_id__exact=welding",
        "?currency__exact=RUB",
        "?created_at__year=2026",
        "?created_at__day=99",
    ],
)
def test_order_changelist(admin_client, orders, query):
    assert admin_client.get(f"/admin/orders/order/{query}").status_code == 200


def test_order_changelist_shows_the_bitrix_columns(admin_client, orders):
    content = admin_client.get("/admin/orders/order/").content

    assert b"Bitrix ID" in content
    assert b"Sync state" in content


def test_order_changelist_has_no_n_plus_one(admin_client, orders, django_assert_max_num_queries, alice):
    for _ in range(20):
        Order.objects.create(owner=alice, service_id="welding", quantity=1)

    with django_assert_max_num_queries(12):
        admin_client.get("/admin/orders/order/")


def test_order_change_page(admin_client, orders):
    assert admin_client.get(f"/admin/orders/order/{orders[0].pk}/change/").status_code == 200


@pytest.mark.parametrize("query", ["", "?q=alice", "?q=+7", "?q=123", "?is_staff__exact=1"])
def test_user_changelist(admin_client, alice, query):
    assert admin_client.get(f"/admin/accounts/user/{query}").status_code == 200


def test_user_changelist_shows_the_bitrix_columns(admin_client, alice):
    content = admin_client.get("/admin/accounts/user/").content

    assert b"Bitrix ID" in content
    assert b"Sync state" in content


def test_user_change_and_add_pages(admin_client, alice):
    assert admin_client.get(f"/admin/accounts/user/{alice.pk}/change/").status_code == 200
    assert admin_client.get("/admin/accounts/user/add/").status_code == 200


def test_resync_action_is_offered(admin_client, orders, alice):
    for path in ("/admin/orders/order/", "/admin/accounts/user/"):
        assert b"resync_selected" in admin_client.get(path).content
