"""Every route answers with and without a trailing slash (README: "one is accepted").

The site's routes are built by one helper, ``bitrixsync.routes.slash_optional``;
this walks the URL map, so a route added without it fails here.
"""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, resolve

# The specification's and README's addresses, with the slash an operator may type.
SLASHED = [
    "/bitrix/sync/status/",
    "/bitrix/sync/worker/status/",
    "/metrics/",
    "/api/docs/",
    "/api/schema/",
    "/api/redoc/",
    "/orders/",
    "/profile/",
    "/services/",
]


@pytest.mark.django_db
@pytest.mark.parametrize("path", SLASHED)
def test_a_trailing_slash_is_not_a_404(client, path):
    response = client.get(path)

    assert response.status_code != 404
    assert response.status_code < 500


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/bitrix/sync/status/", "/bitrix/sync/worker/status/", "/metrics/"])
def test_the_slashed_address_answers_like_the_plain_one(admin_client, path):
    assert admin_client.get(path).status_code == admin_client.get(path.rstrip("/")).status_code == 200


def _site_routes() -> list[str]:
    """Plain (non-admin) routes of the site: "orders", "bitrix/sync/status", ..."""
    found = []

    def walk(patterns, prefix=""):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                if not route.startswith("admin/"):
                    walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route and "<" not in route:
                found.append(route)

    walk(get_resolver().url_patterns)
    return found


def test_every_site_route_resolves_with_and_without_the_slash():
    routes = _site_routes()
    assert "bitrix/webhook" in routes

    for route in routes:
        plain = "/" + route.rstrip("/")
        assert resolve(plain).func is not None
        assert resolve(plain + "/").func is not None
