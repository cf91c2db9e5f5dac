"""Item 4: sign-in, registration, refused webhook tokens and the admin login are rate-limited in Redis."""

from __future__ import annotations

import logging
from urllib.parse import urlencode

import pytest

from crmbridge.redis_io import streams
from tests.inbound.conftest import event_form


@pytest.fixture
def strict(settings):
    """Small limits (the suite's autouse fixture sets generous ones for every other test)."""
    settings.THROTTLE_RATES = {
        "login": "6/min",
        "login_failures": "3/min",
        "register": "2/min",
        "webhook_refused": "3/min",
        "admin_login": "3/min",
    }


def sign_in(client, email: str, password: str = "wrong-password", ip: str = "10.0.0.1"):
    return client.post("/auth/token", {"email": email, "password": password}, format="json", REMOTE_ADDR=ip)


def assert_429(response):
    assert response.status_code == 429, response.content[:200]
    assert int(response["Retry-After"]) > 0
    assert response.json()["detail"]


def test_failed_sign_ins_of_one_account_are_limited_from_any_address(strict, anon_client, alice):
    for n in range(3):
        assert sign_in(anon_client, alice.email, ip=f"10.0.1.{n}").status_code == 400

    assert_429(sign_in(anon_client, alice.email, ip="10.0.2.1"))
    assert_429(sign_in(anon_client, alice.email.upper(), "S3cure-pass-1", ip="10.0.2.2"))  # even the right password
    assert sign_in(anon_client, "bob@example.com", ip="10.0.2.3").status_code == 400  # other accounts are not


def test_successful_sign_ins_do_not_count_as_failures(strict, anon_client, alice):
    for n in range(5):
        assert sign_in(anon_client, alice.email, "S3cure-pass-1", ip=f"10.0.3.{n}").status_code == 200


def test_sign_ins_from_one_address_are_limited(strict, anon_client, db):
    for n in range(6):
        assert sign_in(anon_client, f"user{n}@example.com").status_code == 400

    assert_429(sign_in(anon_client, "another@example.com"))
    assert sign_in(anon_client, "another@example.com", ip="10.0.0.2").status_code == 400


def test_registrations_from_one_address_are_limited(strict, anon_client, db):
    def register(n: int, ip: str = "10.0.0.9"):
        body = {"email": f"new{n}@example.com", "password": "Unusual-horse-9"}
        return anon_client.post("/auth/register", body, format="json", REMOTE_ADDR=ip)

    assert [register(n).status_code for n in range(2)] == [201, 201]
    assert_429(register(3))
    assert register(4, ip="10.0.0.10").status_code == 201


def test_refused_webhook_tokens_are_limited_per_address(strict, client, settings, redis_client):
    settings.BITRIX_INBOUND_TOKEN = "the-right-token"

    def post(token: str, ip: str = "10.0.0.7"):
        data = urlencode(event_form(token=token))
        return client.post(
            "/bitrix/webhook", data=data, content_type="application/x-www-form-urlencoded", REMOTE_ADDR=ip
        )

    assert [post("wrong").status_code for _ in range(3)] == [403, 403, 403]
    assert_429(post("the-right-token"))  # this address is blocked for a while
    assert post("the-right-token", ip="10.0.0.8").status_code == 200
    assert redis_client.xlen(streams.webhooks_stream()) == 1


def test_admin_login_is_limited(strict, client, admin_user):
    for _ in range(3):
        response = client.post("/admin/login/", {"username": "admin", "password": "wrong"}, REMOTE_ADDR="10.0.0.5")
        assert response.status_code == 200  # the form again, with an error

    response = client.post("/admin/login/", {"username": "admin", "password": "S3cure-pass-1"}, REMOTE_ADDR="10.0.0.5")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert client.get("/admin/login/", REMOTE_ADDR="10.0.0.5").status_code == 200  # the page itself still shows


def test_the_limits_live_in_redis_not_in_process_memory(strict, anon_client, alice, redis_client):
    for _ in range(3):
        sign_in(anon_client, alice.email)

    assert any("throttle" in str(key) for key in redis_client.keys("*"))


def test_redis_down_fails_open_with_a_warning(strict, anon_client, alice, settings, caplog):
    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # nothing listens
    with caplog.at_level(logging.WARNING):
        responses = [sign_in(anon_client, alice.email).status_code for _ in range(5)]

    assert responses == [400] * 5
    assert "rate limit" in caplog.text.lower()


def test_a_history_longer_than_the_limit_still_answers_retry_after(strict, anon_client, alice, settings):
    """A lowered rate: more attempts stored than the new limit still give a Retry-After."""
    for _ in range(3):
        sign_in(anon_client, alice.email)
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "login_failures": "1/min", "login": "1/min"}

    assert_429(sign_in(anon_client, alice.email, ip="10.9.9.9"))  # per account: 3 failures > 1
    assert_429(sign_in(anon_client, "bob@example.com"))  # per address: 3 attempts > 1


def test_retry_after_counts_from_the_oldest_attempt_in_the_window(strict, anon_client, db, redis_client):
    for n in range(6):
        assert sign_in(anon_client, f"user{n}@example.com").status_code == 400
    (key,) = redis_client.keys("bitrixsync:throttle:login:*")
    oldest = redis_client.zrange(key, 0, 0, withscores=True)[0][1]
    redis_client.zadd(key, {"older": oldest - 40_000})  # as if one attempt were 40 s old
    redis_client.zremrangebyrank(key, 1, 1)  # still 6 in the window

    response = sign_in(anon_client, "another@example.com")

    assert_429(response)
    assert 18 <= int(response["Retry-After"]) <= 21  # 60 s window - 40 s, not a full minute
    assert redis_client.zcard(key) == 6  # a refused attempt is not counted: hammering does not extend the wait


# --- the admin login shares the account's failure budget (found in review) ----------------------


def admin_sign_in(client, login: str, password: str, ip: str):
    return client.post("/admin/login/?next=/admin/", {"username": login, "password": password}, REMOTE_ADDR=ip)


def test_failed_admin_sign_ins_count_against_the_accounts_budget(strict, client, anon_client, admin_user):
    """Before: /admin/login/ checked passwords outside the budget, 3 guesses per address per minute for ever."""
    for n in range(3):
        assert admin_sign_in(client, "admin@example.com", "wrong", ip=f"10.0.4.{n}").status_code == 200

    assert_429(sign_in(anon_client, "admin@example.com", "S3cure-pass-1", ip="10.0.4.9"))  # the API's budget too
    response = admin_sign_in(client, "admin", "S3cure-pass-1", ip="10.0.4.8")  # by its username, another address
    assert response.status_code == 200 and "Too many failed sign-ins" in response.content.decode()
    assert client.get("/admin/").status_code == 302  # still signed out


def test_an_account_blocked_on_the_api_cannot_go_on_guessing_in_the_admin(strict, client, anon_client, admin_user):
    for n in range(3):
        assert sign_in(anon_client, "admin@example.com", ip=f"10.0.5.{n}").status_code == 400

    response = admin_sign_in(client, "ADMIN@example.com", "S3cure-pass-1", ip="10.0.5.9")

    assert response.status_code == 200 and "Too many failed sign-ins" in response.content.decode()
    assert client.get("/admin/").status_code == 302  # the right password did not sign in


def test_successful_admin_sign_ins_do_not_count_as_failures(strict, client, admin_user):
    for n in range(5):
        assert admin_sign_in(client, "admin", "S3cure-pass-1", ip=f"10.0.6.{n}").status_code == 302
        client.logout()


def test_an_admin_sign_in_by_an_account_that_is_not_staff_counts_as_a_failure(strict, client, anon_client, alice):
    """Its right password is refused like a wrong one: forgiving it would tell the guesser the password was right."""
    for n in range(3):
        assert admin_sign_in(client, "alice", "S3cure-pass-1", ip=f"10.0.7.{n}").status_code == 200

    assert_429(sign_in(anon_client, alice.email, "S3cure-pass-1", ip="10.0.7.9"))
