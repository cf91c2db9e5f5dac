"""Property: no JSON body sent to the order and profile endpoints produces a 500.

Bodies mix the real field names with arbitrary ones and arbitrary JSON values
(huge integers, floats, nulls, nested arrays and objects, any unicode,
including lone surrogates, which ``json.dumps`` escapes as ``\\udXXX``).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orders.models import Order

pytestmark = pytest.mark.django_db

ORDER_FIELDS = ["service_id", "quantity", "material", "comment", "amount", "currency", "status", "owner", "id"]
PROFILE_FIELDS = ["email", "first_name", "last_name", "phone", "is_staff", "bitrix_contact_id", "username"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=300),
    st.sampled_from(["cnc-milling", "RUB", "cancelled", "0.00", "1e5", "-1", "a@b.co", "+7 (495) 123-45-67"]),
)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner))


def bodies(fields: list[str]) -> st.SearchStrategy:
    keys = st.one_of(st.sampled_from(fields), st.text(max_size=20))
    objects = st.dictionaries(keys, json_values, max_size=8)
    return st.one_of(objects, json_values)


FUZZ = settings(
    max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def send(client, method: str, path: str, body) -> int:
    payload = json.dumps(body).encode()
    return client.generic(method, path, payload, content_type="application/json").status_code


@FUZZ
@given(body=bodies(ORDER_FIELDS))
def test_order_create_never_500(alice_client, body):
    assert send(alice_client, "POST", "/orders", body) < 500


@FUZZ
@given(body=bodies(ORDER_FIELDS), method=st.sampled_from(["PUT", "PATCH"]))
def test_order_update_never_500(alice_client, alice, body, method):
    order = Order.objects.create(owner=alice, service_id="welding", quantity=1)

    assert send(alice_client, method, f"/orders/{order.pk}", body) < 500


@FUZZ
@given(body=bodies(PROFILE_FIELDS), method=st.sampled_from(["PUT", "PATCH"]))
def test_profile_update_never_500(alice_client, body, method):
    assert send(alice_client, method, "/profile", body) < 500


@FUZZ
@given(body=bodies([*PROFILE_FIELDS, "password"]))
def test_register_never_500(anon_client, body):
    assert send(anon_client, "POST", "/auth/register", body) < 500
