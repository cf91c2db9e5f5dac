"""``accounts.services`` details the API tests did not pin (found by mutation testing, docs/mutation.md)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from accounts.models import User
from accounts.services import obtain_token, update_profile

pytestmark = pytest.mark.django_db


def test_signing_in_by_email_finds_the_owner_of_the_address_not_a_user_named_after_it(alice, django_user_model):
    """Usernames may contain "@": another account called "alice@example.com" does not get alice's sign-in."""
    django_user_model.objects.create_user(username="alice@example.com", email="x@example.org", password="Other-pass-77")

    token, _expiry = obtain_token(email="ALICE@example.com", password="S3cure-pass-1")

    assert token


def test_bad_credentials_get_one_message_that_names_neither_part(anon_client, alice):
    for body in ({"email": "alice@example.com", "password": "wrong"}, {"username": "nobody", "password": "x"}):
        response = anon_client.post("/auth/token", body, format="json")
        assert response.status_code == 400
        assert response.json() == {"non_field_errors": ["Unable to sign in with these credentials."]}


def test_update_profile_refuses_fields_it_does_not_own_by_name(alice):
    with pytest.raises(TypeError, match=r"^update_profile\(\) cannot change \['is_staff', 'username'\]$"):
        update_profile(user=alice, changes={"is_staff": True, "username": "root", "first_name": "A"})


def test_a_new_email_is_normalised_before_it_is_stored(alice):
    update_profile(user=alice, changes={"email": " Alice.New@EXAMPLE.com "})

    assert User.objects.get(pk=alice.pk).email == "Alice.New@example.com"


def test_an_email_taken_exactly_gets_one_error_not_two(alice, bob):
    with pytest.raises(ValidationError) as caught:
        update_profile(user=bob, changes={"email": "alice@example.com"})

    assert caught.value.message_dict == {"email": ["A user with this e-mail address already exists."]}
