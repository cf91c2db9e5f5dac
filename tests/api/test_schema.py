"""The OpenAPI schema: generated without warnings, with the Bearer scheme and every endpoint."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_schema_generates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))


def test_schema_has_bearer_auth_and_the_api(anon_client):
    response = anon_client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    schema = response.json()
    scheme = schema["components"]["securitySchemes"]["bearerAuth"]
    assert {key: scheme[key] for key in ("type", "scheme")} == {"type": "http", "scheme": "bearer"}
    assert set(scheme) == {"type", "scheme", "description"}
    # The description tells a client the header the server reads and where a token comes from.
    assert f"Authorization: {settings.REST_KNOX['AUTH_HEADER_PREFIX']} <token>" in scheme["description"]
    assert "POST /auth/token" in scheme["description"] and "post" in schema["paths"]["/auth/token"]


def test_a_client_following_the_bearer_schemes_description_is_let_in(anon_client, alice):
    schema = anon_client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    description = schema["components"]["securitySchemes"]["bearerAuth"]["description"]
    header = re.search(r"`Authorization: (\w+) <token>`", description)
    token = anon_client.post("/auth/token", {"username": "alice", "password": "S3cure-pass-1"}, format="json")

    assert anon_client.get("/orders").status_code == 401
    anon_client.credentials(HTTP_AUTHORIZATION=f"{header[1]} {token.json()['token']}")
    assert anon_client.get("/orders").status_code == 200
    assert {"/auth/register", "/auth/token", "/profile", "/orders", "/orders/{id}", "/services"} <= set(schema["paths"])
    assert not any(path.endswith("/") for path in schema["paths"] if path.startswith(("/orders", "/profile")))
    assert {"bearerAuth": []} in schema["paths"]["/orders"]["get"]["security"]


def test_docs_page_loads(anon_client):
    assert anon_client.get("/api/docs").status_code == 200
