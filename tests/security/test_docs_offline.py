"""Item 13: Swagger UI and ReDoc come from the project's static files, not a CDN."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders


@pytest.mark.parametrize("url", ["/api/docs", "/api/redoc"])
def test_docs_pages_reference_no_external_url(client, settings, url):
    settings.STATIC_URL = "/static/"
    response = client.get(url)

    html = response.content.decode()
    assert response.status_code == 200
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", html), re.findall(r"(?:src|href)=\S+", html)
    assert "@latest" not in html and "cdn" not in html.lower()
    assets = re.findall(r"/static/(drf_spectacular_sidecar/[^\"'\s]+)", html)
    assert assets, html[:1000]
    assert all(finders.find(asset) for asset in assets), assets
