"""Writes on orders: create, and update under the status rules below.

Who may change the status (the decision, kept in one place):

* staff may set any status, on any order, and edit any field at any time;
* a customer may cancel their own order (``status: "cancelled"``) while it is
  ``new`` or ``confirmed``, i.e. before production starts, and may set no
  other status: the shop moves an order through its stages (and Bitrix24
  stages come back as statuses, see the inbound events);
* a customer may edit the other fields while the order is ``new`` or
  ``confirmed``; from ``in_production`` on the order is locked for them.

Sending the current status back unchanged is allowed, so that a client may
``PUT`` what it read. Services raise Django's ``ValidationError`` keyed by
field; saves run in a transaction with whatever the Bitrix bridge writes on
``post_save``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.models import User
from orders.models import Order

EDITABLE_FIELDS = frozenset({"service_id", "quantity", "material", "comment", "amount", "currency", "status"})
OPEN_STATUSES = frozenset({Order.Status.NEW, Order.Status.CONFIRMED})


def create_order(
    *,
    owner: User,
    service_id: str,
    quantity: int,
    material: str = "",
    comment: str = "",
    amount: Decimal = Decimal("0.00"),
    currency: str = Order.Currency.RUB,
) -> Order:
    order = Order(
        owner=owner,
        service_id=service_id,
        quantity=quantity,
        material=material,
        comment=comment,
        amount=amount,
        currency=currency,
    )
    order.full_clean()
    with transaction.atomic():
        order.save()
    return order


def update_order(*, order: Order, actor: User, changes: Mapping[str, Any]) -> Order:
    """Apply ``changes`` (a subset of ``EDITABLE_FIELDS``) as ``actor``; a no-op saves and syncs nothing."""
    unexpected = set(changes) - EDITABLE_FIELDS
    if unexpected:
        raise TypeError(f"update_order() cannot change {sorted(unexpected)}")
    changed = [name for name, value in changes.items() if getattr(order, name) != value]
    if not changed:
        return order
    if not actor.is_staff:
        check_customer_change(order=order, changed={name: changes[name] for name in changed})
    for name in changed:
        setattr(order, name, changes[name])
    order.full_clean(exclude=[f.name for f in Order._meta.fields if f.name not in changed])
    with transaction.atomic():
        order.save(update_fields=[*changed, "updated_at"])
    return order


def check_customer_change(*, order: Order, changed: Mapping[str, Any]) -> None:
    """Raise ``ValidationError`` unless a customer may make these changes (see the module docstring)."""
    if order.status not in OPEN_STATUSES:
        label = order.get_status_display().lower()
        raise ValidationError(f"This order is {label} and can no longer be changed. Contact us to change it.")
    new_status = changed.get("status")
    if new_status is not None and new_status != Order.Status.CANCELLED:
        raise ValidationError({"status": ["You can only cancel an order (status: cancelled)."]})
