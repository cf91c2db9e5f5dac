"""An order as its deal's one product row (``crmbridge.bitrix.product_rows``), pure functions by table.

Pinned: the unit price as the exact text sent (at least 2 decimals, as many as ``PRICE x QUANTITY``
needs to round half up to the amount, at most 12; a quantity of 0 sends the amount), the row of a
mapped, an unmapped and an unknown service, and the fingerprint stored on the order (independent of
key order, the same 32 characters as before: a changed digest would send every deal's rows again).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from crmbridge.bitrix.product_rows import fingerprint, rows_for, unit_price
from orders.models import Order


@pytest.mark.parametrize(
    ("amount", "quantity", "price"),
    [
        ("100.00", 4, "25.00"), ("10.00", 1, "10.00"), ("1500", 7, "214.286"), ("100.00", 3, "33.333"),
        ("10", 0, "10.00"), ("10", -1, "10.00"),  # no quantity: the amount as it is
        ("0.01", 4, "0.003"),  # 0.0025 rounds half up
        ("0.02", 25, "0.0008"),  # 0.001 x 25 = 0.025 rounds half up to 0.03, not 0.02
        ("999999.99", 2147483647, "0.000465661283"),  # 12 decimals needed
        ("999999.99", 70_000_000_000, "0.000014285714"),  # 12 at most, even if not enough
    ],
)  # fmt: skip
def test_the_unit_price_is_the_shortest_that_gives_the_amount(amount, quantity, price):
    assert unit_price(Decimal(amount), quantity) == price


def order(**fields) -> Order:
    return Order(**{"service_id": "welding", "quantity": 3, "amount": Decimal("100.00"), **fields})


@pytest.mark.parametrize(
    ("service_id", "product_id", "name"),
    [("welding", 118, "Welding"), ("cnc-milling", 0, "CNC milling"), ("plasma-cutting", 0, "plasma-cutting")],
)
def test_an_order_is_one_row_of_its_service(settings, service_id, product_id, name):
    settings.BITRIX_PRODUCT_MAP = {"welding": 118}

    assert rows_for(order(service_id=service_id)) == [
        {"PRODUCT_ID": product_id, "PRODUCT_NAME": name, "PRICE": "33.333", "QUANTITY": 3, "MEASURE_CODE": 796}
    ]


def test_the_fingerprint_is_the_stored_digest_whatever_the_key_order():
    row = {"PRODUCT_ID": 0, "PRODUCT_NAME": "Welding", "PRICE": "33.333", "QUANTITY": 3, "MEASURE_CODE": 796}

    digest = fingerprint([row])

    assert digest == fingerprint([dict(reversed(row.items()))])
    assert digest == "f917af5fe1e521b80a9fccc06b869a54"
    assert fingerprint([{**row, "PRICE": Decimal("33.333")}]) == digest  # a Decimal counts as its text
