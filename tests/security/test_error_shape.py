"""Item 11: every API error is JSON with a ``detail``, whatever produced it."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import path

from bitrixsync.urls import urlpatterns as site_urlpatterns


def explode(request):
    raise RuntimeError("an unexpected failure")


urlpatterns = [path("boom", explode), *site_urlpatterns]


def assert_json_error(response, status: int) -> None:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    assert response.json()["detail"]


@pytest.mark.parametrize("url", ["/orders/-1", "/orders/abc", "/nowhere", "/orders?page=999", "/orders?page=x",
                                 "/orders/99999"])  # fmt: skip
def test_404s_are_json(alice_client, url):
    assert_json_error(alice_client.get(url), 404)


def test_404s_are_json_with_debug_on_too(alice_client, settings):
    """./run.sh turns DEBUG on: an API client still gets JSON, not Django's technical 404 page."""
    settings.DEBUG = True
    assert_json_error(alice_client.get("/orders/-1"), 404)


# /metrics answers in the operators' envelope instead (issue 19): tests/diagnostics/test_metrics.py.
@pytest.mark.parametrize(("method", "url"), [("delete", "/orders"), ("get", "/bitrix/webhook"),
                                             ("delete", "/services")])  # fmt: skip
def test_405s_are_json(alice_client, method, url):
    response = getattr(alice_client, method)(url)
    assert_json_error(response, 405)
    assert response["Allow"]


def test_too_many_form_fields_is_a_json_400(alice_client, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    body = "&".join(f"f{n}=1" for n in range(50))

    response = alice_client.post("/orders", data=body, content_type="application/x-www-form-urlencoded")

    assert_json_error(response, 400)


@pytest.mark.urls(__name__)
def test_a_500_is_json_and_says_nothing_of_the_cause(db):
    client = Client(raise_request_exception=False)

    response = client.get("/boom")

    assert_json_error(response, 500)
    assert "unexpected failure" not in response.content.decode()


def test_admin_pages_keep_html(client):
    response = client.get("/admin/nowhere/")
    assert not response["Content-Type"].startswith("application/json")
