"""One way to declare a route: without a trailing slash, as the specification's
curl examples use (``/orders``, ``/bitrix/sync/status``), and with one too.

``slash_optional("orders", OrderListCreateApi)`` gives two patterns: ``orders``
(named, reversed, in the OpenAPI schema) and ``orders/`` (same view, left out
of the schema so each operation appears once). Neither redirects: a redirected
POST would lose its body. Use it for every site route (``tests/api/test_routes.py``
walks the URL map and fails on a route declared without it).
"""

from __future__ import annotations

from collections.abc import Callable

from django.urls import URLPattern, path
from rest_framework.views import APIView


def slash_optional(
    route: str, view: type[APIView] | Callable, name: str | None = None, **initkwargs
) -> list[URLPattern]:
    """``route`` and ``route/``, both served by ``view`` (an ``APIView`` class, or a view function)."""
    route = route.rstrip("/")
    if isinstance(view, type) and issubclass(view, APIView):
        main, slashed = view.as_view(**initkwargs), view.as_view(schema=None, **initkwargs)
    else:
        main = slashed = view
    return [path(route, main, name=name), path(f"{route}/", slashed)]
