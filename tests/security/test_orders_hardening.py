"""Items 8 and 9: only staff set the price; concurrent changes of one order cannot lose each other."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from orders.models import Order
from orders.services import update_order


@pytest.fixture
def confirmed(alice):
    return Order.objects.create(owner=alice, service_id="welding", quantity=2, amount="1500.00", status="confirmed")


@pytest.mark.parametrize("change", [{"amount": "0.01"}, {"currency": "USD"}, {"amount": "0.01", "currency": "EUR"}])
def test_a_customer_cannot_set_the_price(alice_client, confirmed, change):
    response = alice_client.patch(f"/orders/{confirmed.pk}", change, format="json")

    assert response.status_code == 400
    assert set(response.json()) == set(change)
    confirmed.refresh_from_db()
    assert (str(confirmed.amount), confirmed.currency) == ("1500.00", "RUB")


def test_a_customer_may_send_the_price_back_unchanged(alice_client, confirmed):
    read = alice_client.get(f"/orders/{confirmed.pk}").json()

    response = alice_client.put(f"/orders/{confirmed.pk}", {**read, "quantity": 3}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["amount"] == "1500.00"


def test_a_customer_cannot_price_a_new_order(alice_client):
    response = alice_client.post("/orders", {"service_id": "welding", "quantity": 1, "amount": "0.01"}, format="json")

    assert response.status_code == 400
    assert "amount" in response.json()


def test_staff_set_the_price(admin_client_api, confirmed):
    response = admin_client_api.patch(f"/orders/{confirmed.pk}", {"amount": "990.00", "currency": "USD"}, format="json")

    assert response.status_code == 200
    assert (response.json()["amount"], response.json()["currency"]) == ("990.00", "USD")


def test_a_stale_customer_cancel_does_not_overwrite_a_staff_change(alice, admin_user, confirmed):
    """The customer's request read the order before staff moved it to production; it must see the new state."""
    stale = Order.objects.get(pk=confirmed.pk)  # what the customer's request loaded
    update_order(order=Order.objects.get(pk=confirmed.pk), actor=admin_user, changes={"status": "in_production"})

    with pytest.raises(ValidationError):
        update_order(order=stale, actor=alice, changes={"status": "cancelled"})

    assert Order.objects.get(pk=confirmed.pk).status == "in_production"


def test_a_stale_staff_change_keeps_the_customers_other_fields(alice, admin_user, confirmed):
    stale = Order.objects.get(pk=confirmed.pk)
    update_order(order=Order.objects.get(pk=confirmed.pk), actor=alice, changes={"quantity": 7})

    update_order(order=stale, actor=admin_user, changes={"status": "in_production"})

    fresh = Order.objects.get(pk=confirmed.pk)
    assert (fresh.quantity, fresh.status) == (7, "in_production")


@pytest.mark.django_db(transaction=True)
def test_racing_cancel_and_staff_change_never_both_succeed_unseen(alice, admin_user):
    """Threads against the real database: the answers must agree with the row that remains."""
    import threading

    from django.db import connection

    from tests.conftest import _client_for

    for _ in range(5):
        order = Order.objects.create(owner=alice, service_id="welding", quantity=1, status="confirmed")
        barrier = threading.Barrier(2)
        results: dict[str, int] = {}

        def send(who: str, client, body: dict, order_pk: int = order.pk, barrier=barrier, results=results) -> None:
            try:
                barrier.wait(timeout=10)
                results[who] = client.patch(f"/orders/{order_pk}", body, format="json").status_code
            finally:
                connection.close()

        threads = [
            threading.Thread(target=send, args=("customer", _client_for(alice), {"status": "cancelled"})),
            threading.Thread(target=send, args=("staff", _client_for(admin_user), {"status": "in_production"})),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        final = Order.objects.get(pk=order.pk).status
        assert results["staff"] == 200
        if results["customer"] == 200:  # the cancel went first, then staff moved it on: both seen
            assert final == "in_production"
        else:
            assert results["customer"] == 400 and final == "in_production"
