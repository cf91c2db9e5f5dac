"""Writes on orders: create, and update under the status rules below.

Who may change what (the decision, kept in one place). "Staff" means a user
with the ``orders.change_order`` permission (superusers have it); ``is_staff``
alone grants nothing, as in the admin:

* staff may set any status, on any order, and edit any field at any time;
* only staff set the price (``amount``, ``currency``): for customers they are
  read-only (sending back the current value is fine, another one is a 400);
* someone who may see an order they do not own (``orders.view_order``) but not
  change it gets a 403;
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

``update_order`` locks the row (``select_for_update``) and checks the rules on
the locked, current row: a customer's cancel and a staff change racing each
other are applied one after the other, the second seeing the first's result,
so neither is lost silently (on SQLite, ``BEGIN IMMEDIATE`` serialises them).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from accounts.models import User
from orders.models import Order

EDITABLE_FIELDS = frozenset({"service_id", "quantity", "material", "comment", "amount", "currency", "status"})
OPEN_STATUSES = frozenset({Order.Status.NEW, Order.Status.CONFIRMED})


PRICE_FIELDS = ("amount", "currency")


def may_manage_orders(user: User) -> bool:
    return user.has_perm("orders.change_order")


def create_order(
    *,
    owner: User,
    service_id: str,
    quantity: int,
    material: str = "",
    comment: str = "",
    amount: Decimal = Decimal("0.00"),
    currency: str = Order.Currency.RUB,
    actor: User | None = None,
) -> Order:
    """A new order of ``owner``; a price (amount, currency) only when ``actor`` (default: the owner) is staff."""
    priced = {name for name, value in (("amount", amount), ("currency", currency)) if value != _DEFAULTS[name]}
    if priced and not may_manage_orders(actor or owner):
        raise _price_error(priced)
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
    with transaction.atomic():
        # The row as it is now, locked until the commit: the rules are checked on it, not on
        # what the request read earlier (a concurrent change would otherwise be overwritten).
        locked = Order.objects.select_for_update().get(pk=order.pk)
        changed = [name for name, value in changes.items() if getattr(locked, name) != value]
        if not changed:
            return locked
        if not may_manage_orders(actor):
            if locked.owner_id != actor.pk:
                raise PermissionDenied("You may view this order but not change it.")
            check_customer_change(order=locked, changed={name: changes[name] for name in changed})
        for name in changed:
            setattr(locked, name, changes[name])
        locked.full_clean(exclude=[f.name for f in Order._meta.fields if f.name not in changed])
        locked.save(update_fields=[*changed, "updated_at"])
    return locked


def check_customer_change(*, order: Order, changed: Mapping[str, Any]) -> None:
    """Raise ``ValidationError`` unless a customer may make these changes (see the module docstring)."""
    if order.status not in OPEN_STATUSES:
        label = order.get_status_display().lower()
        raise ValidationError(f"This order is {label} and can no longer be changed. Contact us to change it.")
    priced = set(changed) & set(PRICE_FIELDS)
    if priced:
        raise _price_error(priced)
    new_status = changed.get("status")
    if new_status is not None and new_status != Order.Status.CANCELLED:
        raise ValidationError({"status": ["You can only cancel an order (status: cancelled)."]})


def _price_error(fields: set[str]) -> ValidationError:
    return ValidationError({name: ["Set by the shop: read-only for customers."] for name in sorted(fields)})


_DEFAULTS = {"amount": Decimal("0.00"), "currency": Order.Currency.RUB}
