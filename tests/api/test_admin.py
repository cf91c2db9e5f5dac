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

    assert b"Bitrix24" in content


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

    assert b"Bitrix24" in content


def test_user_change_and_add_pages(admin_client, alice):
    assert admin_client.get(f"/admin/accounts/user/{alice.pk}/change/").status_code == 200
    assert admin_client.get("/admin/accounts/user/add/").status_code == 200


def test_resync_action_is_offered(admin_client, orders, alice):
    for path in ("/admin/orders/order/", "/admin/accounts/user/"):
        assert b"resync_selected" in admin_client.get(path).content


# The dev stack announces DEV_ADMIN_EMAIL: the admin's login takes the e-mail too. --------------


def sign_in(client, login: str, password: str = "S3cure-pass-1"):
    return client.post("/admin/login/?next=/admin/", {"username": login, "password": password})


@pytest.mark.parametrize("login", ["admin", "admin@example.com", "ADMIN@example.com"])
def test_admin_login_accepts_the_username_or_the_email(client, admin_user, login):
    response = sign_in(client, login)

    assert response.status_code == 302, response.content[-500:]
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_admin_login_with_a_wrong_password_or_unknown_email_fails(client, admin_user):
    assert sign_in(client, "admin@example.com", "wrong-password").status_code == 200
    assert sign_in(client, "nobody@example.com").status_code == 200
    assert client.get("/admin/").status_code == 302  # still signed out


def test_admin_login_says_the_email_works(client):
    assert "Username or e-mail" in client.get("/admin/login/").content.decode()


def test_an_email_signs_in_its_owner_even_when_another_user_has_it_as_username(client, admin_user, django_user_model):
    # Issue 19 item 3: the e-mail wins (an older account may hold it as its username).
    django_user_model.objects.create_user(
        username="admin@example.com", email="other@example.com", password="Other-pass-77", is_staff=True
    )

    assert sign_in(client, "admin@example.com", "Other-pass-77").status_code == 200  # refused: not that account
    assert sign_in(client, "admin@example.com").status_code == 302
