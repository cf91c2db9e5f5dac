"""Registration, tokens and the 401s of the API."""

from __future__ import annotations

import pytest

from accounts.models import User

pytestmark = pytest.mark.django_db

STRONG = "Unusual-horse-battery-9"


def register(client, **fields):
    body = {"email": "jane.doe@example.com", "password": STRONG, **fields}
    return client.post("/auth/register", body, format="json")


def test_register_creates_user_and_returns_a_working_token(anon_client):
    response = register(anon_client, first_name="Jane", last_name="Doe", phone="+7 (495) 123-45-67")

    assert response.status_code == 201, response.data
    assert response.data["username"] == "jane.doe"
    assert response.data["phone"] == "+7 (495) 123-45-67"
    assert "password" not in response.data
    anon_client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.data['token']}")
    assert anon_client.get("/profile").data["email"] == "jane.doe@example.com"


def test_register_derives_a_free_username_from_the_email(anon_client, alice):
    response = register(anon_client, email="alice@other.example")

    assert response.status_code == 201, response.data
    assert response.data["username"] == "alice-2"


def test_register_keeps_a_given_username(anon_client):
    assert register(anon_client, username="jdoe").data["username"] == "jdoe"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": "ALICE@example.com"}, "email"),  # taken, in another case
        ({"password": "short"}, "password"),
        ({"password": "password123"}, "password"),  # too common
        ({"password": "12345678901"}, "password"),  # entirely numeric
        ({"password": "jane.doe@example.com"}, "password"),  # too similar to the e-mail
        ({"username": "has space"}, "username"),
        ({"username": "Alice"}, "username"),  # taken, in another case
        ({"phone": "call me maybe"}, "phone"),
        ({"phone": "12"}, "phone"),
        ({"phone": "+1" + "2" * 20}, "phone"),
        ({"phone": "12345\t678"}, "phone"),
        ({"first_name": "x" * 151}, "first_name"),
        ({"email": None}, "email"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_register_rejects_bad_fields_with_field_errors(anon_client, alice, fields, field):
    response = register(anon_client, **fields)

    assert response.status_code == 400
    assert field in response.data, response.data


def test_register_reports_every_broken_rule_at_once(anon_client, alice):
    response = register(anon_client, email="alice@example.com", username="alice", password="short")

    assert response.status_code == 400
    assert set(response.data) == {"email", "username", "password"}
    assert len(response.data["email"]) == len(response.data["username"]) == 1  # said once, not per check


def test_register_requires_email_and_password(anon_client):
    response = anon_client.post("/auth/register", {}, format="json")

    assert response.status_code == 400
    assert set(response.data) == {"email", "password"}


def test_register_ignores_a_bad_token(anon_client):
    anon_client.credentials(HTTP_AUTHORIZATION="Bearer nonsense")

    assert register(anon_client).status_code == 201


def test_register_cannot_make_staff(anon_client):
    response = register(anon_client, is_staff=True)

    assert response.status_code == 400
    assert not User.objects.filter(is_staff=True).exists()


@pytest.mark.parametrize(
    "credentials",
    [
        {"email": "alice@example.com"},
        {"email": "ALICE@Example.com"},
        {"username": "alice"},
    ],
)
def test_token_with_email_or_username(anon_client, alice, credentials):
    response = anon_client.post("/auth/token", {**credentials, "password": "S3cure-pass-1"}, format="json")

    assert response.status_code == 200, response.data
    assert set(response.data) == {"token", "expiry"}
    assert _client_for_token(response.data["token"]).get("/profile").data["id"] == alice.pk


def test_each_sign_in_gets_its_own_token_and_all_work(anon_client, alice):
    """knox: one token per sign-in (per device), each revocable alone (POST /auth/logout)."""
    body = {"email": "alice@example.com", "password": "S3cure-pass-1"}

    first = anon_client.post("/auth/token", body, format="json").data["token"]
    second = anon_client.post("/auth/token", body, format="json").data["token"]

    assert first != second
    assert [_client_for_token(t).get("/profile").status_code for t in (first, second)] == [200, 200]


def _client_for_token(token: str):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.mark.parametrize(
    "body",
    [
        {"email": "alice@example.com", "password": "wrong"},
        {"username": "alice", "password": "wrong"},
        {"email": "nobody@example.com", "password": "S3cure-pass-1"},
        {"username": "nobody", "password": "S3cure-pass-1"},
    ],
)
def test_token_refuses_bad_credentials_with_400(anon_client, alice, body):
    response = anon_client.post("/auth/token", body, format="json")

    assert response.status_code == 400
    assert "token" not in response.data
    assert response.data["non_field_errors"]


def test_token_refuses_an_inactive_user(anon_client, alice):
    alice.is_active = False
    alice.save()

    response = anon_client.post("/auth/token", {"username": "alice", "password": "S3cure-pass-1"}, format="json")

    assert response.status_code == 400


@pytest.mark.parametrize("body", [{"password": "x"}, {"email": "alice@example.com"}, {}])
def test_token_needs_a_login_and_a_password(anon_client, body):
    assert anon_client.post("/auth/token", body, format="json").status_code == 400


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/profile"), ("put", "/profile"), ("patch", "/profile"), ("get", "/orders"), ("post", "/orders")],
)
@pytest.mark.parametrize("header", [None, "Bearer nonsense", "Bearer", "Token abc", "Bearer a b"])
def test_missing_or_bad_token_is_401(anon_client, method, path, header):
    if header is not None:
        anon_client.credentials(HTTP_AUTHORIZATION=header)

    response = getattr(anon_client, method)(path, {}, format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_order_detail_without_token_is_401_not_404(anon_client, alice):
    assert anon_client.get("/orders/1").status_code == 401


def test_token_of_a_deactivated_user_is_refused(alice_client, alice):
    alice.is_active = False
    alice.save()

    assert alice_client.get("/profile").status_code == 401
