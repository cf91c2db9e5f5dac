"""Issue 19 items 2 and 3: one account, one sign-in identity, one failure budget.

* A username with "@" must be the account's own e-mail address (registration, profile, admin).
* An identifier that is some account's e-mail signs in to *that* account, on /auth/token (whichever
  field carries it) and /admin/login/, even when an older account has it as its username.
* Failed sign-ins count against the account the identifier resolves to: its e-mail and its username
  share one budget.
"""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.contrib.auth import authenticate
from django.core.exceptions import ValidationError

pytestmark = pytest.mark.django_db

PASSWORD = "S3cure-pass-1"
IMPOSTOR_PASSWORD = "Impostor-pass-88"


def register(client, **fields):
    body = {"email": "new@example.com", "password": "Unusual-horse-9", **fields}
    return client.post("/auth/register", body, format="json")


def token(client, **fields):
    return client.post("/auth/token", fields, format="json")


def signed_in_as(client, response) -> str:
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['token']}")
    return client.get("/profile").json()["email"]


# --- registration and profile ---------------------------------------------------------------


def test_a_username_that_is_someone_elses_email_is_refused(anon_client, admin_user):
    response = register(anon_client, username="admin@example.com")

    assert response.status_code == 400
    assert "username" in response.json()


@pytest.mark.parametrize("username", ["ADMIN@example.com", "someone@nowhere.example", "a@b"])
def test_any_email_shaped_username_but_ones_own_is_refused(anon_client, admin_user, username):
    response = register(anon_client, username=username)

    assert response.status_code == 400 and "username" in response.json()


def test_ones_own_email_as_username_is_fine(anon_client):
    response = register(anon_client, email="jane@example.com", username="Jane@example.com")

    assert response.status_code == 201, response.json()


def test_a_username_that_was_the_email_follows_an_email_change(anon_client):
    created = register(anon_client, email="jane@example.com", username="jane@example.com").json()
    anon_client.credentials(HTTP_AUTHORIZATION=f"Bearer {created['token']}")

    response = anon_client.patch("/profile", {"email": "jane.doe@example.org"}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["username"] == "jane.doe@example.org"


def test_the_model_refuses_it_too_for_the_admin(django_user_model, alice):
    user = django_user_model(username="alice@example.com", email="mallory@example.com")

    with pytest.raises(ValidationError) as raised:
        user.full_clean(exclude=["password"])
    assert "username" in raised.value.message_dict


# --- sign-in: the e-mail wins -----------------------------------------------------------------


@pytest.fixture
def impostor(admin_user, django_user_model):
    """An account from before the rule: its username is the admin's e-mail address."""
    return django_user_model.objects.create_user(
        username="admin@example.com", email="impostor@example.com", password=IMPOSTOR_PASSWORD
    )


@pytest.mark.parametrize("field", ["email", "username"])
def test_the_token_endpoint_signs_the_email_owner_in_whichever_field(anon_client, impostor, field):
    assert token(anon_client, **{field: "admin@example.com", "password": IMPOSTOR_PASSWORD}).status_code == 400

    response = token(anon_client, **{field: "admin@example.com", "password": PASSWORD})

    assert response.status_code == 200
    assert signed_in_as(anon_client, response) == "admin@example.com"


def test_the_admin_login_signs_the_email_owner_in(client, impostor):
    impostors_try = client.post("/admin/login/", {"username": "admin@example.com", "password": IMPOSTOR_PASSWORD})
    assert impostors_try.status_code == 200  # the form again: not signed in

    response = client.post("/admin/login/?next=/admin/", {"username": "admin@example.com", "password": PASSWORD})

    assert response.status_code == 302
    assert client.get("/admin/").context["user"].email == "admin@example.com"


def test_the_impostor_still_signs_in_with_its_own_email(anon_client, impostor):
    response = token(anon_client, email="impostor@example.com", password=IMPOSTOR_PASSWORD)

    assert response.status_code == 200


def test_the_migration_renames_usernames_that_are_not_the_accounts_own_email(impostor, alice, django_user_model):
    own = django_user_model.objects.create_user(username="Own@Example.com", email="own@example.com", password="x")
    migration = importlib.import_module("accounts.migrations.0005_email_shaped_usernames")

    migration.rename_email_shaped_usernames(apps, None)

    impostor.refresh_from_db()
    assert "@" not in impostor.username and impostor.username.startswith("impostor")
    own.refresh_from_db()
    assert own.username == "Own@Example.com"  # its own address: kept
    alice.refresh_from_db()
    assert alice.username == "alice"


def test_the_migration_keeps_an_email_shaped_username_that_is_nobodys_email(django_user_model):
    """Found in review: an account without an e-mail signs in only by such a username; renaming it locked it out."""
    django_user_model.objects.create_user(username="bob@corp.example", email="", password="Bob-pass-12345")
    migration = importlib.import_module("accounts.migrations.0005_email_shaped_usernames")

    migration.rename_email_shaped_usernames(apps, None)

    assert authenticate(None, username="bob@corp.example", password="Bob-pass-12345") is not None


# --- item 2: one failure budget per account -----------------------------------------------------


@pytest.fixture
def strict(settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "login_failures": "3/min"}


@pytest.mark.parametrize(
    ("first", "then"),
    [
        ({"email": "alice@example.com"}, {"username": "alice"}),
        ({"username": "alice"}, {"email": "ALICE@example.com"}),
        ({"username": "alice"}, {"username": "alice@example.com"}),
    ],
)
def test_the_email_and_the_username_share_one_budget(strict, anon_client, alice, first, then):
    for _ in range(3):
        assert token(anon_client, **first, password="wrong").status_code == 400

    assert token(anon_client, **then, password="wrong").status_code == 429
    assert token(anon_client, **then, password=PASSWORD).status_code == 429  # even the right one


def test_another_accounts_budget_is_its_own(strict, anon_client, alice, bob):
    for _ in range(3):
        token(anon_client, username="alice", password="wrong")

    assert token(anon_client, username="bob", password=PASSWORD).status_code == 200
