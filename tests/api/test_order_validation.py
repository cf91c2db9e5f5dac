"""Bad order input answers 400 with per-field messages; no body can produce a 500.

The Django test client re-raises an exception from a view, so a 500 would
fail these tests loudly rather than hide as a status code.
"""

from __future__ import annotations

import json

import pytest

from orders.catalogue import SERVICES
from orders.models import Order

pytestmark = pytest.mark.django_db

VALID = {"service_id": "cnc-turning", "quantity": 2}

FIELD_CASES = [
    ({"service_id": "underwater-welding"}, "service_id"),
    ({"service_id": ""}, "service_id"),
    ({"service_id": None}, "service_id"),
    ({"service_id": 7}, "service_id"),
    ({"service_id": ["cnc-milling"]}, "service_id"),
    ({"service_id": {"id": "cnc-milling"}}, "service_id"),
    ({"service_id": "x" * 100_000}, "service_id"),
    ({"quantity": 0}, "quantity"),
    ({"quantity": -1}, "quantity"),
    ({"quantity": 1.5}, "quantity"),
    ({"quantity": "abc"}, "quantity"),
    ({"quantity": True}, "quantity"),
    ({"quantity": None}, "quantity"),
    ({"quantity": [1]}, "quantity"),
    ({"quantity": 1_000_001}, "quantity"),
    ({"quantity": 2**31}, "quantity"),
    ({"quantity": 2**64}, "quantity"),
    ({"quantity": 10**300}, "quantity"),
    ({"quantity": "9" * 5000}, "quantity"),
    ({"amount": -0.01}, "amount"),
    ({"amount": "-1"}, "amount"),
    ({"amount": "abc"}, "amount"),
    ({"amount": "0.001"}, "amount"),
    ({"amount": "1e20"}, "amount"),
    ({"amount": 10**13}, "amount"),
    ({"amount": "NaN"}, "amount"),
    ({"amount": "Infinity"}, "amount"),
    ({"amount": "-Infinity"}, "amount"),
    ({"amount": None}, "amount"),
    ({"amount": {"value": 1}}, "amount"),
    ({"amount": "9" * 5000}, "amount"),
    ({"currency": "XYZ"}, "currency"),
    ({"currency": "rub"}, "currency"),
    ({"currency": None}, "currency"),
    ({"currency": 1}, "currency"),
    ({"material": "m" * 201}, "material"),
    ({"material": None}, "material"),
    ({"material": ["steel"]}, "material"),
    ({"material": "steel\x00"}, "material"),
    ({"comment": "c" * 5001}, "comment"),
    ({"comment": {"text": "hi"}}, "comment"),
    ({"comment": "nul \x00 inside"}, "comment"),
    ({"qty": 5}, "qty"),
]


@pytest.mark.parametrize(("override", "field"), FIELD_CASES)
def test_create_rejects_bad_field(alice_client, override, field):
    response = alice_client.post("/orders", {**VALID, **override}, format="json")

    assert response.status_code == 400, response.data
    assert field in response.data, response.data
    assert not Order.objects.exists()


@pytest.mark.parametrize(("override", "field"), FIELD_CASES)
def test_update_rejects_bad_field(alice_client, alice, override, field):
    order = Order.objects.create(owner=alice, **VALID)

    response = alice_client.put(f"/orders/{order.pk}", override, format="json")

    assert response.status_code == 400, response.data
    assert field in response.data, response.data
    order.refresh_from_db()
    assert (order.service_id, order.quantity) == ("cnc-turning", 2)


def test_unknown_service_lists_the_catalogue(alice_client):
    response = alice_client.post("/orders", {**VALID, "service_id": "teleportation"}, format="json")

    message = str(response.data["service_id"][0])
    assert all(slug in message for slug in SERVICES)
    assert "teleportation" not in message


def test_required_fields(alice_client):
    response = alice_client.post("/orders", {}, format="json")

    assert response.status_code == 400
    assert set(response.data) == {"service_id"}  # quantity defaults to 1


@pytest.mark.parametrize(
    ("override", "stored"),
    [
        ({"quantity": "7"}, {"quantity": 7}),
        ({"quantity": 3.0}, {"quantity": 3}),
        ({"quantity": 1_000_000}, {"quantity": 1_000_000}),
        ({"amount": 12}, {"amount": 12}),
        ({"amount": "999999999999.99"}, {"amount": "999999999999.99"}),
        ({"amount": "0"}, {"amount": 0}),
        ({"material": "Сталь 45, 鋼, 🔩"}, {"material": "Сталь 45, 鋼, 🔩"}),
        ({"comment": "c" * 5000}, {"comment": "c" * 5000}),
        ({"material": "  padded  "}, {"material": "padded"}),
    ],
)
def test_accepted_edge_values(alice_client, admin_client_api, override, stored):
    from decimal import Decimal

    client = admin_client_api if "amount" in override else alice_client  # the price is set by staff
    response = client.post("/orders", {**VALID, **override}, format="json")

    assert response.status_code == 201, response.data
    order = Order.objects.get(pk=response.data["id"])
    for name, value in stored.items():
        expected = Decimal(str(value)) if name == "amount" else value
        assert getattr(order, name) == expected


# Not an object of fields: each must be a 400.
BROKEN_BODIES = [
    b"{",
    b'{"service_id": "cnc-milling", "quantity": 1,}',
    b"[]",
    b'[{"service_id": "cnc-milling", "quantity": 1}]',
    b'"a string"',
    b"42",
    b"null",
    b"true",
    b"NaN",
    b'{"service_id": "cnc-milling", "quantity": NaN}',
    b'{"service_id": "cnc-milling", "quantity": Infinity}',
    b'{"service_id": "cnc-milling", "quantity": ' + b"9" * 5000 + b"}",
    b"\xff\xfe\x00garbage",
    b'{"service_id": "\xc3\x28", "quantity": 1}',
    b'{"service_id": "cnc-milling", "quantity": 1, "material": "\\ud800"}',
    b'{"service_id": "cnc-milling", "quantity": 1, "\\udfff": 1}',
    b'{"service_id": "\\ud800", "quantity": 1}',
    b'{"email": "\\ud800@example.com", "password": "\\ud800", "phone": "\\ud800"}',
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
    b"[" * 100_000,
]
# Odd but parseable: any 2xx or 4xx will do, never a 500.
ODD_BODIES = [
    b"",
    b'{"service_id": "cnc-milling", "quantity": 1e400}',
    b'{"service_id": "cnc-milling", "quantity": 1, "amount": 1e400}',
    b'{"service_id": "cnc-milling", "quantity": 1, "amount": -1e-400}',
    b'{"service_id": "cnc-milling", "quantity": 1, "amount": 1e-400}',
    b'{"service_id": "cnc-milling", "quantity": 1, "material": "\\u0000"}',
    b'{"service_id": "cnc-milling", "quantity": 1, "service_id": "welding"}',
]


def _ids(body: bytes) -> str:
    return repr(body[:40]) + (f"...{len(body)}" if len(body) > 40 else "")


@pytest.mark.parametrize("body", BROKEN_BODIES + ODD_BODIES, ids=_ids)
@pytest.mark.parametrize("method", ["post", "put", "patch"])
def test_malformed_order_bodies_are_never_500(alice_client, alice, body, method):
    order = Order.objects.create(owner=alice, **VALID)
    path = "/orders" if method == "post" else f"/orders/{order.pk}"

    response = alice_client.generic(method.upper(), path, body, content_type="application/json")

    assert response.status_code < 500
    if body in BROKEN_BODIES:
        assert response.status_code == 400, response.content[:300]


@pytest.mark.parametrize("body", BROKEN_BODIES + ODD_BODIES, ids=_ids)
@pytest.mark.parametrize(
    ("method", "path"),
    [("put", "/profile"), ("patch", "/profile"), ("post", "/auth/register"), ("post", "/auth/token")],
)
def test_malformed_account_bodies_are_never_500(alice_client, body, method, path):
    response = alice_client.generic(method.upper(), path, body, content_type="application/json")

    assert response.status_code < 500
    if body in BROKEN_BODIES:
        assert response.status_code == 400, response.content[:300]


def test_an_empty_put_changes_nothing(alice_client, alice):
    order = Order.objects.create(owner=alice, **VALID)

    response = alice_client.generic("PUT", f"/orders/{order.pk}", b"", content_type="application/json")

    assert response.status_code == 200


def test_unsupported_content_type_is_415(alice_client):
    response = alice_client.generic("POST", "/orders", json.dumps(VALID), content_type="text/plain")

    assert response.status_code == 415


def test_form_encoded_body_works_too(alice_client):
    response = alice_client.post("/orders", VALID)  # multipart, as an HTML form would send

    assert response.status_code == 201


@pytest.mark.parametrize("pk", ["9" * 19, "9" * 25, "18446744073709551616"])
def test_huge_ids_in_the_url_are_404(alice_client, pk):
    assert alice_client.get(f"/orders/{pk}").status_code == 404
    assert alice_client.patch(f"/orders/{pk}", {"quantity": 1}, format="json").status_code == 404
