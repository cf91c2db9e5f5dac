"""The OpenAPI schema: generated without warnings, with the Bearer scheme and every endpoint."""

from __future__ import annotations

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_schema_generates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))


def test_schema_has_bearer_auth_and_the_api(anon_client):
    response = anon_client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    schema = response.json()
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    assert {"/auth/register", "/auth/token", "/profile", "/orders", "/orders/{id}", "/services"} <= set(schema["paths"])
    assert not any(path.endswith("/") for path in schema["paths"] if path.startswith(("/orders", "/profile")))
    assert {"bearerAuth": []} in schema["paths"]["/orders"]["get"]["security"]


def test_docs_page_loads(anon_client):
    assert anon_client.get("/api/docs").status_code == 200
