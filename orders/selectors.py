"""Reads on orders: who may see which."""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from accounts.models import User
from orders.models import Order


def orders_visible_to(user: User) -> QuerySet[Order]:
    """Staff see every order; a customer sees their own."""
    orders = Order.objects.order_by("-id")
    return orders if user.is_staff else orders.filter(owner=user)


def order_visible_to(*, user: User, pk: int) -> Order:
    """The order, or 404, also when it exists but belongs to someone else (do not reveal it)."""
    return get_object_or_404(orders_visible_to(user), pk=pk)
