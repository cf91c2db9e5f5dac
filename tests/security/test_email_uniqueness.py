"""Item 5: one mailbox, one account: case-insensitive uniqueness in the database, normalised input."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from accounts.services import normalize_email, register_user, update_profile

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_database_refuses_an_email_differing_only_in_case(alice):
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(username="other", email="ALICE@example.com")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Jane@Example.COM", "Jane@example.com"),
        ("\uff4a\uff41\uff4e\uff45@example.com", "jane@example.com"),  # fullwidth letters: NFKC
        ("jane@BÜCHER.example", "jane@xn--bcher-kva.example"),  # IDNA domain
        ("  jane@example.com ", "jane@example.com"),
    ],
)
def test_normalisation(given, expected):
    assert normalize_email(given) == expected


def test_a_fullwidth_duplicate_is_refused(anon_client, alice):
    body = {"email": "\uff41\uff4c\uff49\uff43\uff45@EXAMPLE.com", "password": "Unusual-horse-9"}
    response = anon_client.post("/auth/register", body, format="json")

    assert response.status_code == 400
    assert "email" in response.json()


def test_an_idn_address_and_its_punycode_are_one_account(anon_client):
    def register(email: str):
        return anon_client.post("/auth/register", {"email": email, "password": "Unusual-horse-9"}, format="json")

    first, again = register("jane@bücher.example"), register("jane@xn--bcher-kva.example")

    assert first.status_code == 201, first.content
    assert again.status_code == 400 and "email" in again.json()


def test_concurrent_registrations_of_one_mailbox_make_one_account():
    emails = ["race@example.com", "Race@example.com", "RACE@example.com", "race@EXAMPLE.COM", "rAce@example.com",
              "racE@example.com"]  # fmt: skip
    barrier = threading.Barrier(len(emails))
    results: list[tuple[int, dict]] = []

    def register(email: str) -> None:
        try:
            barrier.wait(timeout=10)
            response = Client().post(
                "/auth/register", {"email": email, "password": "Unusual-horse-9"}, content_type="application/json"
            )
            results.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=register, args=(email,)) for email in emails]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    codes = sorted(code for code, _ in results)
    assert codes == [201] + [400] * (len(emails) - 1), results
    assert all("email" in body for code, body in results if code == 400), results
    assert User.objects.filter(email__iexact="race@example.com").count() == 1


def _writes_to_users(queries) -> list[str]:
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith(("INSERT", "UPDATE"))]
    return [sql for sql in writes if "accounts_user" in sql]


def test_registration_finds_an_address_differing_only_in_case_itself_with_the_other_field_errors(alice):
    """The service's check answers before any write; the constraint above is only the race's referee."""
    with CaptureQueriesContext(connection) as queries, pytest.raises(ValidationError) as weak:
        register_user(email="ALICE@Example.COM", password="x")
    assert set(weak.value.message_dict) == {"email", "password"}  # one answer with every field's error

    with CaptureQueriesContext(connection) as queries, pytest.raises(ValidationError) as strong:
        register_user(email="ALICE@Example.COM", password="Unusual-horse-9")
    assert strong.value.message_dict == {"email": ["A user with this e-mail address already exists."]}
    assert _writes_to_users(queries) == []  # refused by the check, not by the database


def test_a_profile_change_to_an_address_differing_only_in_case_is_refused_before_the_update(alice, bob):
    with CaptureQueriesContext(connection) as queries, pytest.raises(ValidationError) as caught:
        update_profile(user=bob, changes={"email": "Alice@EXAMPLE.com", "first_name": "B" * 300})
    assert set(caught.value.message_dict) == {"email", "first_name"}
    assert _writes_to_users(queries) == []


@contextmanager
def a_rival_commits_first(**rival):
    """Just as the service's save begins, another connection commits ``rival``: the race, made certain.

    The hook is on this connection's statements: the transaction's ``BEGIN`` (SQLite) or the
    first write to the users table (PostgreSQL, where no BEGIN statement is sent).
    """
    done = threading.Event()

    def commit_rival() -> None:
        try:
            User.objects.create(**rival)
        finally:
            connection.close()

    def hook(execute, sql, params, many, context):
        if not done.is_set() and (
            sql.startswith("BEGIN") or (sql.startswith(("INSERT", "UPDATE")) and "accounts_user" in sql)
        ):
            done.set()
            thread = threading.Thread(target=commit_rival)
            thread.start()
            thread.join(timeout=30)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(hook):
        yield
    assert done.is_set(), "the service never started its save"


@pytest.mark.parametrize(
    ("rival", "expected"),
    [
        (
            {"username": "rival", "email": "RACE@example.com"},
            {"email": ["A user with this e-mail address already exists."]},
        ),
        ({"username": "racer", "email": "other@example.com"}, {"username": ["This username is taken."]}),
    ],
)
def test_a_registration_that_loses_the_race_says_which_field_the_database_refused(rival, expected):
    with a_rival_commits_first(**rival), pytest.raises(ValidationError) as caught:
        register_user(email="race@example.com", username="racer", password="Unusual-horse-9")

    assert caught.value.message_dict == expected
    assert list(User.objects.values_list("username", flat=True)) == [rival["username"]]


def test_a_profile_change_that_loses_the_race_names_the_email(alice):
    with a_rival_commits_first(username="rival", email="New@example.com"), pytest.raises(ValidationError) as caught:
        update_profile(user=alice, changes={"email": "new@example.com"})

    assert caught.value.message_dict == {"email": ["A user with this e-mail address already exists."]}
    assert User.objects.get(pk=alice.pk).email == "alice@example.com"
