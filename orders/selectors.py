"""Reads on orders: who may see which."""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from accounts.models import User
from orders.models import Order


def orders_visible_to(user: User) -> QuerySet[Order]:
    """Users with ``orders.view_order`` (staff given it, superusers) see every order; others their own.

    ``is_staff`` alone grants nothing here, as in the admin: the API follows the model permissions.
    """
    orders = Order.objects.order_by("-id")
    return orders if user.has_perm("orders.view_order") else orders.filter(owner=user)


def order_visible_to(*, user: User, pk: int) -> Order:
    """The order, or 404, also when it exists but belongs to someone else (do not reveal it)."""
    return get_object_or_404(orders_visible_to(user), pk=pk)
