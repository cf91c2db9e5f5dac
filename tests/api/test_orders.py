"""POST/GET /orders and GET/PUT/PATCH /orders/<id>: ownership, pagination, status rules."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from orders.models import Order
from orders.services import update_order

pytestmark = pytest.mark.django_db

ORDER = {
    "service_id": "cnc-milling",
    "quantity": 10,
    "material": "Aluminium 6061",
    "comment": "Anodised, black",
}
PRICE = {"amount": "1500.50", "currency": "EUR"}  # set by staff only


def make_order(owner, **fields) -> Order:
    return Order.objects.create(owner=owner, service_id="laser-cutting", quantity=1, **fields)


def test_create_order(alice_client, alice):
    response = alice_client.post("/orders", ORDER, format="json")

    assert response.status_code == 201, response.data
    order = Order.objects.get(pk=response.data["id"])
    assert order.owner == alice
    assert (order.quantity, order.amount, order.currency, order.status) == (10, Decimal("0.00"), "RUB", "new")
    assert response.data["service_name"] == "CNC milling"
    assert response.data["bitrix_deal_id"] is None


def test_an_order_with_only_the_required_fields_has_empty_material_and_comment(alice_client):
    response = alice_client.post("/orders", {"service_id": "cnc-milling", "quantity": 1}, format="json")

    assert response.status_code == 201, response.data
    order = Order.objects.get(pk=response.data["id"])
    assert (order.material, order.comment) == ("", "")


def test_staff_place_a_priced_order(admin_client_api, admin_user):
    response = admin_client_api.post("/orders", {**ORDER, **PRICE}, format="json")

    assert response.status_code == 201, response.data
    order = Order.objects.get(pk=response.data["id"])
    assert (order.amount, order.currency) == (Decimal("1500.50"), "EUR")
    assert response.data["amount"] == "1500.50"


def test_create_with_only_the_required_fields_takes_defaults(alice_client):
    response = alice_client.post("/orders", {"service_id": "welding", "quantity": 1}, format="json")

    assert response.status_code == 201, response.data
    assert (response.data["amount"], response.data["currency"], response.data["status"]) == ("0.00", "RUB", "new")


def test_the_specifications_manual_test_without_quantity_orders_one(alice_client):
    response = alice_client.post("/orders", {"service_id": "cnc-milling"}, format="json")

    assert response.status_code == 201, response.data
    assert response.data["quantity"] == 1


def test_create_ignores_read_only_fields(alice_client, alice, bob):
    body = {**ORDER, "owner": bob.pk, "bitrix_deal_id": 5, "status": "done", "id": 12345}

    response = alice_client.post("/orders", body, format="json")

    assert response.status_code == 201, response.data
    order = Order.objects.get(pk=response.data["id"])
    assert (order.owner, order.bitrix_deal_id, order.status) == (alice, None, "new")


def test_list_shows_only_own_orders(alice_client, alice, bob):
    mine = make_order(alice)
    make_order(bob)

    response = alice_client.get("/orders")

    assert response.status_code == 200
    assert response.data["count"] == 1
    assert [o["id"] for o in response.data["results"]] == [mine.pk]


def test_staff_sees_all_orders(admin_client_api, alice, bob):
    make_order(alice)
    make_order(bob)

    assert admin_client_api.get("/orders").data["count"] == 2


def test_list_is_paginated_newest_first(alice_client, alice):
    orders = [make_order(alice) for _ in range(25)]

    first = alice_client.get("/orders").data
    second = alice_client.get(first["next"]).data

    assert (first["count"], len(first["results"]), len(second["results"])) == (25, 20, 5)
    assert first["results"][0]["id"] == orders[-1].pk
    assert second["next"] is None


def test_page_size_is_capped(alice_client, alice):
    for _ in range(3):
        make_order(alice)

    assert len(alice_client.get("/orders?page_size=2").data["results"]) == 2
    assert len(alice_client.get("/orders?page_size=100000").data["results"]) == 3
    assert len(alice_client.get("/orders?page_size=-1").data["results"]) == 3  # ignored: the default
    assert len(alice_client.get("/orders?page_size=abc").data["results"]) == 3


@pytest.mark.parametrize("query", ["page=999", "page=abc", "page=-1", "page=" + "9" * 400])
def test_bad_page_is_404_not_500(alice_client, alice, query):
    make_order(alice)

    assert alice_client.get(f"/orders?{query}").status_code == 404


def test_get_own_order(alice_client, alice):
    order = make_order(alice)

    response = alice_client.get(f"/orders/{order.pk}")

    assert response.status_code == 200
    assert response.data["id"] == order.pk


@pytest.mark.parametrize("method", ["get", "put", "patch"])
def test_another_users_order_is_404(bob_client, alice, method):
    order = make_order(alice)

    response = getattr(bob_client, method)(f"/orders/{order.pk}", {"quantity": 5}, format="json")

    assert response.status_code == 404
    order.refresh_from_db()
    assert order.quantity == 1


@pytest.mark.parametrize("pk", ["0", "999999", "9" * 30])
def test_missing_order_is_404(alice_client, pk):
    assert alice_client.get(f"/orders/{pk}").status_code == 404
    assert alice_client.put(f"/orders/{pk}", {"quantity": 5}, format="json").status_code == 404


def test_staff_may_read_and_change_any_order(admin_client_api, alice):
    order = make_order(alice)

    assert admin_client_api.get(f"/orders/{order.pk}").status_code == 200
    response = admin_client_api.put(f"/orders/{order.pk}", {"status": "in_production"}, format="json")

    assert response.status_code == 200, response.data
    order.refresh_from_db()
    assert (order.status, order.owner) == ("in_production", alice)


def test_put_with_only_quantity_changes_only_quantity(alice_client, alice):
    """The specification's curl: ``PUT /orders/123 -d '{"quantity": 5}'``."""
    order = make_order(alice, material="Steel", comment="Keep", amount=Decimal("99.90"), currency="USD")

    response = alice_client.put(f"/orders/{order.pk}", {"quantity": 5}, format="json")

    assert response.status_code == 200, response.data
    order.refresh_from_db()
    assert order.quantity == 5
    assert (order.material, order.comment, order.amount, order.currency) == ("Steel", "Keep", Decimal("99.90"), "USD")


def test_patch_changes_several_fields(alice_client, alice):
    order = make_order(alice)

    response = alice_client.patch(
        f"/orders/{order.pk}", {"material": "PLA", "service_id": "3d-printing"}, format="json"
    )

    assert response.status_code == 200, response.data
    order.refresh_from_db()
    assert (order.material, order.service_id) == ("PLA", "3d-printing")


def test_put_back_what_was_read_works(alice_client, alice):
    order = make_order(alice, bitrix_deal_id=42)
    body = {**alice_client.get(f"/orders/{order.pk}").data, "quantity": 3, "bitrix_deal_id": 1, "owner": 999}

    response = alice_client.put(f"/orders/{order.pk}", body, format="json")

    assert response.status_code == 200, response.data
    order.refresh_from_db()
    assert (order.quantity, order.bitrix_deal_id, order.owner) == (3, 42, alice)


def test_an_unchanged_put_does_not_save(alice_client, alice):
    order = make_order(alice)
    before = order.updated_at

    response = alice_client.put(f"/orders/{order.pk}", {"quantity": 1, "status": "new"}, format="json")

    assert response.status_code == 200
    order.refresh_from_db()
    assert order.updated_at == before


@pytest.mark.parametrize("start", ["new", "confirmed"])
def test_customer_may_cancel_an_open_order(alice_client, alice, start):
    order = make_order(alice, status=start)

    response = alice_client.patch(f"/orders/{order.pk}", {"status": "cancelled"}, format="json")

    assert response.status_code == 200, response.data
    order.refresh_from_db()
    assert order.status == "cancelled"


@pytest.mark.parametrize("target", ["confirmed", "in_production", "shipped", "done"])
def test_customer_may_not_advance_the_status(alice_client, alice, target):
    order = make_order(alice)

    response = alice_client.patch(f"/orders/{order.pk}", {"status": target}, format="json")

    assert response.status_code == 400
    assert "status" in response.data
    order.refresh_from_db()
    assert order.status == "new"


LOCKED = ["in_production", "shipped", "done", "cancelled"]


@pytest.mark.parametrize(
    ("locked", "body"),
    [(s, {"quantity": 7}) for s in LOCKED]
    + [(s, {"status": "new"}) for s in LOCKED]
    + [(s, {"status": "cancelled"}) for s in LOCKED if s != "cancelled"],
)
def test_customer_cannot_change_an_order_once_in_production(alice_client, alice, locked, body):
    order = make_order(alice, status=locked)

    response = alice_client.patch(f"/orders/{order.pk}", body, format="json")

    assert response.status_code == 400
    assert "non_field_errors" in response.data
    order.refresh_from_db()
    assert (order.status, order.quantity) == (locked, 1)


@pytest.mark.parametrize("locked", LOCKED)
def test_sending_back_a_locked_orders_values_is_a_no_op(alice_client, alice, locked):
    order = make_order(alice, status=locked)

    response = alice_client.put(f"/orders/{order.pk}", {"status": locked, "quantity": 1}, format="json")

    assert response.status_code == 200


@pytest.mark.parametrize("target", Order.Status.values)
def test_staff_may_set_any_status(admin_client_api, alice, target):
    order = make_order(alice, status="done")

    response = admin_client_api.patch(f"/orders/{order.pk}", {"status": target}, format="json")

    assert response.status_code == 200, response.data
    order.refresh_from_db()
    assert order.status == target


def test_trailing_slash_is_accepted_and_post_is_not_redirected(alice_client, alice):
    response = alice_client.post("/orders/", ORDER, format="json")

    assert response.status_code == 201
    assert alice_client.get(f"/orders/{response.data['id']}/").status_code == 200


def test_delete_is_not_allowed(alice_client, alice):
    order = make_order(alice)

    assert alice_client.delete(f"/orders/{order.pk}").status_code == 405
    assert Order.objects.filter(pk=order.pk).exists()


def test_services_lists_the_catalogue_without_a_token(anon_client):
    response = anon_client.get("/services")

    assert response.status_code == 200
    assert {"id": "cnc-milling", "name": "CNC milling"} in response.data


# -- what a customer is told (found by mutation testing: only the status codes were checked) ----------
def test_a_customer_is_told_exactly_what_they_may_not_change(alice_client, alice):
    order = make_order(alice)

    priced = alice_client.patch(f"/orders/{order.pk}", {"amount": "1.00", "currency": "EUR"}, format="json")
    shipped = alice_client.patch(f"/orders/{order.pk}", {"status": "shipped"}, format="json")
    Order.objects.filter(pk=order.pk).update(status="shipped")
    late = alice_client.patch(f"/orders/{order.pk}", {"quantity": 3}, format="json")

    read_only = ["Set by the shop: read-only for customers."]
    assert (priced.status_code, priced.json()) == (400, {"amount": read_only, "currency": read_only})
    assert (shipped.status_code, shipped.json()) == (
        400,
        {"status": ["You can only cancel an order (status: cancelled)."]},
    )
    assert late.status_code == 400
    assert late.json() == {
        "non_field_errors": ["This order is shipped and can no longer be changed. Contact us to change it."]
    }


def test_update_order_refuses_fields_it_does_not_own_by_name(alice):
    with pytest.raises(TypeError, match=r"^update_order\(\) cannot change \['id', 'owner'\]$"):
        update_order(order=make_order(alice), actor=alice, changes={"owner": None, "id": 5, "quantity": 2})


def test_update_order_checks_the_fields_it_changes_and_only_those(admin_user, alice):
    order = make_order(alice)
    Order.objects.filter(pk=order.pk).update(service_id="retired-service")  # a choice since withdrawn

    with pytest.raises(ValidationError) as caught:
        update_order(order=order, actor=admin_user, changes={"quantity": 0})
    assert set(caught.value.message_dict) == {"quantity"}

    update_order(order=order, actor=admin_user, changes={"status": "confirmed"})  # the old choice does not block it
    assert Order.objects.get(pk=order.pk).status == "confirmed"
