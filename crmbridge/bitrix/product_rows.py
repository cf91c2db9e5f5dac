"""An order as the product rows of its deal (``crm.deal.productrows.set``).

One row per order: ``PRODUCT_NAME`` the service's name, ``QUANTITY`` the order's
quantity, ``MEASURE_CODE`` 796 (pieces), ``PRODUCT_ID`` from ``BITRIX_PRODUCT_MAP``
(0, a free-text row, when the service is not mapped).

The price: the order has a total ``amount``, the row a unit ``PRICE``. When the
amount does not divide evenly by the quantity (100.00 for 3 pieces), ``PRICE`` is
``amount / quantity`` with as many decimals as it takes (at least 2, at most 12)
for ``PRICE x QUANTITY`` to round to the amount to the cent (33.3333 x 3 =
99.9999 -> 100.00), so the portal's sum of the rows (its ``OPPORTUNITY``) is the
order's amount. No second "rounding" row: the issue asks for one row per order.

Rows are sent again only when they change: ``fingerprint`` is stored on the order
(``Order.bitrix_rows_hash``) after a successful ``set``.
"""

from __future__ import annotations

import hashlib
import json
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings

from orders.catalogue import SERVICES

MEASURE_PIECES = 796
MAX_PRICE_DECIMALS = 12
CENT = Decimal("0.01")


def unit_price(amount: Decimal, quantity: int) -> str:
    """The shortest ``amount / quantity`` (>= 2 decimals) whose product with ``quantity`` rounds to ``amount``."""
    amount = Decimal(amount).quantize(CENT)
    if quantity <= 0:
        return str(amount)
    price = amount
    for decimals in range(2, MAX_PRICE_DECIMALS + 1):
        price = (amount / quantity).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
        if (price * quantity).quantize(CENT, rounding=ROUND_HALF_UP) == amount:
            break
    return str(price)


def rows_for(order) -> list[dict]:
    return [
        {
            "PRODUCT_ID": settings.BITRIX_PRODUCT_MAP.get(order.service_id, 0),
            "PRODUCT_NAME": SERVICES.get(order.service_id, order.service_id),
            "PRICE": unit_price(order.amount, order.quantity),
            "QUANTITY": order.quantity,
            "MEASURE_CODE": MEASURE_PIECES,
        }
    ]


def fingerprint(rows: list[dict]) -> str:
    """What the rows show, as a short digest (stored to skip sending unchanged rows)."""
    text = json.dumps(rows, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]
