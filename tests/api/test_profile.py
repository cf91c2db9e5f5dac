"""GET/PUT/PATCH /profile: the signed-in user, changed field by field."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_get_profile_is_the_signed_in_user(alice_client, alice):
    response = alice_client.get("/profile")

    assert response.status_code == 200
    assert response.data["id"] == alice.pk
    assert response.data["email"] == "alice@example.com"
    assert response.data["bitrix_contact_id"] is None
    assert "password" not in response.data


def test_put_with_only_the_email_changes_only_the_email(alice_client, alice):
    """The specification's curl: ``PUT /profile -d '{"email": "newemail@example.com"}'``."""
    alice.phone = "+7 495 123 45 67"
    alice.save()

    response = alice_client.put("/profile", {"email": "newemail@example.com"}, format="json")

    assert response.status_code == 200, response.data
    alice.refresh_from_db()
    assert alice.email == "newemail@example.com"
    assert (alice.first_name, alice.last_name, alice.phone) == ("Alice", "Tester", "+7 495 123 45 67")


def test_patch_changes_names_and_phone(alice_client, alice):
    body = {"first_name": "Alicia", "last_name": "", "phone": "8 (800) 555-35-35"}

    response = alice_client.patch("/profile", body, format="json")

    assert response.status_code == 200, response.data
    alice.refresh_from_db()
    assert (alice.first_name, alice.last_name, alice.phone) == ("Alicia", "", "8 (800) 555-35-35")


def test_put_back_what_was_read_is_accepted_and_read_only_fields_are_ignored(alice_client, alice):
    alice.bitrix_contact_id = 77
    alice.save()
    body = {**alice_client.get("/profile").data, "is_staff": True, "bitrix_contact_id": 1, "id": 999}

    response = alice_client.put("/profile", body, format="json")

    assert response.status_code == 200, response.data
    alice.refresh_from_db()
    assert (alice.is_staff, alice.bitrix_contact_id, alice.pk) == (False, 77, response.data["id"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "bob@example.com"}, "email"),
        ({"email": "BOB@EXAMPLE.COM"}, "email"),
        ({"email": "nope"}, "email"),
        ({"email": ""}, "email"),
        ({"email": None}, "email"),
        ({"email": ["a@example.com"]}, "email"),
        ({"phone": "phone"}, "phone"),
        ({"phone": "1" * 40}, "phone"),
        ({"first_name": "x" * 200}, "first_name"),
        ({"first_name": 12}, None),  # a number is accepted as its text
        ({"last_name": {"a": 1}}, "last_name"),
        ({"password": "Another-pass-2"}, "password"),
        ({"is_superuser": True}, "is_superuser"),
        ({"emial": "typo@example.com"}, "emial"),
    ],
)
def test_profile_validation(alice_client, alice, bob, body, field):
    response = alice_client.patch("/profile", body, format="json")

    if field is None:
        assert response.status_code == 200
        return
    assert response.status_code == 400
    assert field in response.data, response.data
    alice.refresh_from_db()
    assert alice.email == "alice@example.com"
    assert not alice.is_superuser


def test_keeping_ones_own_email_in_another_case_is_allowed(alice_client, alice):
    response = alice_client.put("/profile", {"email": "Alice@example.com"}, format="json")

    assert response.status_code == 200, response.data


def test_profile_trailing_slash_works_too(alice_client):
    assert alice_client.get("/profile/").status_code == 200


def test_staff_profile_shows_staff(admin_client_api):
    assert admin_client_api.get("/profile").data["is_staff"] is True


def test_new_email_signs_in(alice_client, anon_client):
    alice_client.put("/profile", {"email": "newemail@example.com"}, format="json")

    response = anon_client.post("/auth/token", {"email": "newemail@example.com", "password": "S3cure-pass-1"})

    assert response.status_code == 200
