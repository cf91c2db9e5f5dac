"""Item 6: API tokens are hashed at rest, expire, die with a password change, and can be revoked."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.tokens import token_for


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def sign_in(client, email="alice@example.com", password="S3cure-pass-1"):
    return client.post("/auth/token", {"email": email, "password": password}, format="json")


def all_stored_text() -> str:
    """Every value of every table: a token must not be found in it as issued."""
    dump = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            dump.extend(str(row) for row in cursor.fetchall())
    return "\n".join(dump)


def test_the_token_is_not_stored_as_issued(anon_client, alice):
    response = sign_in(anon_client)

    token = response.json()["token"]
    assert response.status_code == 200 and len(token) >= 40
    assert token not in all_stored_text()
    assert bearer(token).get("/profile").status_code == 200


def test_the_answer_has_the_expiry(anon_client, alice, settings):
    settings.REST_KNOX = {**settings.REST_KNOX, "TOKEN_TTL": timedelta(hours=2)}
    body = sign_in(anon_client).json()

    assert set(body) >= {"token", "expiry"}
    assert body["expiry"]


def test_an_expired_token_is_refused(alice):
    from knox.models import AuthToken

    token = token_for(alice)
    AuthToken.objects.filter(user=alice).update(expiry=timezone.now() - timedelta(seconds=1))

    assert bearer(token).get("/profile").status_code == 401


def test_the_expiry_follows_the_setting(alice, settings):
    from knox.models import AuthToken

    settings.REST_KNOX = {**settings.REST_KNOX, "TOKEN_TTL": timedelta(hours=3)}
    token_for(alice)

    expiry = AuthToken.objects.get(user=alice).expiry
    assert timedelta(hours=2, minutes=59) < expiry - timezone.now() <= timedelta(hours=3)


def test_a_password_change_revokes_every_token(alice):
    tokens = [token_for(alice), token_for(alice)]
    assert all(bearer(t).get("/profile").status_code == 200 for t in tokens)

    alice.set_password("An0ther-secret-pass")
    alice.save()

    assert [bearer(t).get("/profile").status_code for t in tokens] == [401, 401]


def test_saving_a_user_without_a_password_change_keeps_tokens(alice):
    token = token_for(alice)
    alice.first_name = "Alicia"
    alice.save()

    assert bearer(token).get("/profile").status_code == 200


def test_logout_revokes_this_token_only(alice):
    this, other = token_for(alice), token_for(alice)

    response = bearer(this).post("/auth/logout")

    assert response.status_code == 204
    assert bearer(this).get("/profile").status_code == 401
    assert bearer(other).get("/profile").status_code == 200


def test_logout_all_revokes_every_token_of_the_user(alice, bob):
    tokens = [token_for(alice), token_for(alice)]
    bobs = token_for(bob)

    assert bearer(tokens[0]).post("/auth/logout-all").status_code == 204

    assert [bearer(t).get("/profile").status_code for t in tokens] == [401, 401]
    assert bearer(bobs).get("/profile").status_code == 200


def test_logout_without_a_token_is_401(anon_client):
    assert anon_client.post("/auth/logout").status_code == 401


@pytest.mark.parametrize("header", ["Bearer \xe9t\xe9", "Bearer " + "f" * 500, "Bearer zz"])
def test_odd_tokens_are_401_not_500(db, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    assert client.get("/profile").status_code == 401


def test_the_old_authtoken_table_is_gone(db):
    assert "authtoken_token" not in connection.introspection.table_names()
