"""``accounts.services`` details the API tests did not pin (found by mutation testing, docs/mutation.md)."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import ValidationError

from accounts.models import User
from accounts.services import InvalidCredentials, derive_username, obtain_token, register_user, update_profile

pytestmark = pytest.mark.django_db


def test_signing_in_by_email_finds_the_owner_of_the_address_not_a_user_named_after_it(alice, django_user_model):
    """Usernames may contain "@": another account called "alice@example.com" does not get alice's sign-in."""
    django_user_model.objects.create_user(username="alice@example.com", email="x@example.org", password="Other-pass-77")

    for email in ("alice@example.com", "ALICE@example.com"):
        token, _expiry = obtain_token(email=email, password="S3cure-pass-1")
        assert token

    with pytest.raises(InvalidCredentials) as caught:
        obtain_token(email="alice@example.com", password="Other-pass-77")  # the other account's password
    assert (caught.value.messages, caught.value.code) == (
        ["Unable to sign in with these credentials."],
        "authorization",
    )


def test_a_taken_username_or_email_is_a_unique_error_on_that_field(alice):
    with pytest.raises(ValidationError) as caught:
        register_user(email="Alice@example.com", username="ALICE", password="Unusual-horse-9")

    errors = caught.value.error_dict
    assert caught.value.message_dict == {
        "username": ["This username is taken."],
        "email": ["A user with this e-mail address already exists."],
    }
    assert [errors["username"][0].code, errors["email"][0].code] == ["unique", "unique"]


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


# -- derive_username -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("email", "username"),
    [
        ("jane.doe+tag@x.org", "jane.doe+tag"),
        ("ja ne!#@x.org", "jane"),  # characters a username cannot hold are dropped
        ('"a@b"@x.org', "a@b"),  # the local part is everything before the last "@"
        ("!!!@x.org", "user"),
        ("j" * 200 + "@x.org", "j" * 142),  # room left for a "-NN" or random suffix
    ],
)
def test_a_username_is_derived_from_the_local_part(email, username):
    assert derive_username(email) == username


def test_after_nineteen_taken_names_a_random_suffix_is_used(django_user_model):
    for name in ["bob"] + [f"bob-{n}" for n in range(2, 20)]:
        django_user_model.objects.create(username=name, email=f"{name}@example.com")

    assert re.fullmatch(r"bob-[0-9a-f]{6}", derive_username("bob@example.com"))


# -- register_user and update_profile --------------------------------------------------
def test_registration_stores_the_names_given_and_empty_ones_otherwise():
    jane = register_user(email="jane@example.com", password="Unusual-horse-9", first_name="Jane", last_name="Doe")
    john = register_user(email="john@example.com", password="Unusual-horse-9")

    assert (jane.first_name, jane.last_name) == ("Jane", "Doe")
    assert (john.first_name, john.last_name) == ("", "")
    assert obtain_token(email="john@example.com", password="Unusual-horse-9")[0]  # the password was set


def test_registration_checks_the_fields_themselves():
    with pytest.raises(ValidationError) as caught:
        register_user(email="jane@example.com", password="Unusual-horse-9", phone="call me")

    assert set(caught.value.message_dict) == {"phone"}


def test_a_profile_change_checks_only_what_changed_and_writes_only_that(alice):
    """An old phone that today's validator refuses does not block a name change; a concurrent
    change of another field is not overwritten by this one's stale copy."""
    User.objects.filter(pk=alice.pk).update(phone="legacy: ext 12")
    stale = User.objects.get(pk=alice.pk)
    User.objects.filter(pk=alice.pk).update(last_name="Changed-elsewhere")

    update_profile(user=stale, changes={"first_name": "Alicia"})

    fresh = User.objects.get(pk=alice.pk)
    assert (fresh.first_name, fresh.last_name, fresh.phone) == ("Alicia", "Changed-elsewhere", "legacy: ext 12")


# -- a username that is the account's e-mail follows it (found by mutation testing) ------------------
def test_a_username_that_is_the_email_moves_with_it_and_others_stay(django_user_model, alice):
    jane = django_user_model.objects.create_user(username="Jane@example.com", email="jane@example.com", password="x")

    update_profile(user=jane, changes={"email": "jane.doe@Example.com"})
    update_profile(user=alice, changes={"email": "alice.new@example.com"})  # "alice" is not her address

    assert User.objects.filter(pk=jane.pk).values_list("username", "email").get() == (
        "jane.doe@example.com",
        "jane.doe@example.com",
    )
    assert User.objects.get(pk=alice.pk).username == "alice"


def test_an_email_whose_address_is_another_accounts_username_is_refused(django_user_model):
    django_user_model.objects.create_user(username="taken@example.com", email="other@example.org", password="x")
    jane = django_user_model.objects.create_user(username="jane@example.com", email="jane@example.com", password="x")

    with pytest.raises(ValidationError) as caught:
        update_profile(user=jane, changes={"email": "Taken@example.com"})

    assert caught.value.message_dict == {"username": ["This username is taken."]}
    assert User.objects.get(pk=jane.pk).username == "jane@example.com"


def test_changing_only_the_case_of_an_email_that_is_the_username_is_not_a_clash_with_oneself(django_user_model):
    jane = django_user_model.objects.create_user(username="Jane@example.com", email="Jane@example.com", password="x")

    update_profile(user=jane, changes={"email": "jane@example.com"})

    assert User.objects.filter(pk=jane.pk).values_list("username", "email").get() == ("jane@example.com",) * 2
