"""Issue 19 item 1: a forged X-Forwarded-For does not reset any per-address limit.

One function (``bitrixsync.client_address.client_address``) decides the address for
every per-address limit: with ``THROTTLE_NUM_PROXIES=0`` it is ``REMOTE_ADDR`` alone;
with N proxies the N-th address from the right of ``X-Forwarded-For``.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.test import RequestFactory

from bitrixsync.client_address import client_address
from tests.inbound.conftest import event_form

PEER = "192.0.2.10"  # the one machine sending every request below


@pytest.fixture
def production_rates(settings):
    """The defaults of bitrixsync/settings.py (the suite's autouse fixture lifts them)."""
    settings.THROTTLE_RATES = {
        "login": "20/min",
        "login_failures": "10/hour",
        "register": "10/hour",
        "webhook_refused": "20/min",
        "admin_login": "10/min",
        "metrics_refused": "20/min",
    }
    settings.THROTTLE_NUM_PROXIES = 0


def forged(i: int) -> dict:
    return {"REMOTE_ADDR": PEER, "HTTP_X_FORWARDED_FOR": f"10.0.0.{i}"}


def test_23_sign_ins_with_forged_forwarding_headers_hit_the_limit(production_rates, anon_client, db):
    codes = [
        anon_client.post(
            "/auth/token", {"email": f"user{i}@example.com", "password": "wrong"}, format="json", **forged(i)
        ).status_code
        for i in range(23)
    ]

    assert codes == [400] * 20 + [429] * 3


def test_registrations_with_forged_forwarding_headers_hit_the_limit(production_rates, anon_client, db):
    codes = [
        anon_client.post(
            "/auth/register", {"email": f"new{i}@example.com", "password": "Unusual-horse-9"}, format="json",
            **forged(i),
        ).status_code
        for i in range(12)
    ]  # fmt: skip

    assert codes == [201] * 10 + [429] * 2


def test_refused_webhook_tokens_with_forged_forwarding_headers_hit_the_limit(production_rates, client, settings):
    settings.BITRIX_INBOUND_TOKEN = "the-right-token"
    body = urlencode(event_form(token="wrong"))
    codes = [
        client.post(
            "/bitrix/webhook", data=body, content_type="application/x-www-form-urlencoded", **forged(i)
        ).status_code
        for i in range(22)
    ]

    assert codes == [403] * 20 + [429] * 2


def test_admin_sign_ins_with_forged_forwarding_headers_hit_the_limit(production_rates, client, admin_user):
    codes = [
        client.post("/admin/login/", {"username": "admin", "password": "wrong"}, **forged(i)).status_code
        for i in range(12)
    ]

    assert codes == [200] * 10 + [429] * 2  # 200: the form again, with its error


def test_wrong_metrics_tokens_with_forged_forwarding_headers_hit_the_limit(production_rates, client, settings, db):
    settings.BITRIX_METRICS_TOKEN = "the-metrics-token"
    codes = [client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer guess-{i}", **forged(i)).status_code for i in range(22)]

    assert codes == [403] * 20 + [429] * 2
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer guess", REMOTE_ADDR=PEER)
    assert response.json() == {"success": False, "message": response.json()["message"], "data": None}
    assert int(response["Retry-After"]) > 0
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer guess", REMOTE_ADDR="192.0.2.11").status_code == 403


def test_the_right_metrics_token_is_not_counted(production_rates, client, settings, db):
    settings.BITRIX_METRICS_TOKEN = "the-metrics-token"
    for _ in range(25):
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer the-metrics-token").status_code == 200


# --- which address, with and without proxies ----------------------------------------------


def address(settings, proxies: int, remote: str = "203.0.113.9", forwarded: str | None = None) -> str:
    settings.THROTTLE_NUM_PROXIES = proxies
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return client_address(RequestFactory().get("/", **extra))


def test_without_proxies_the_forwarding_header_is_ignored(settings):
    assert address(settings, 0, forwarded="10.0.0.1") == "203.0.113.9"
    assert address(settings, 0) == "203.0.113.9"


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (1, "198.51.100.7", "198.51.100.7"),  # the proxy appended the client it saw
        (1, "10.0.0.1, 198.51.100.7", "198.51.100.7"),  # the client's forged entry is on the left
        (1, "10.0.0.1,198.51.100.7", "198.51.100.7"),
        (2, "10.0.0.1, 198.51.100.7, 172.16.0.2", "198.51.100.7"),  # the 2nd from the right
        (2, "198.51.100.7, 172.16.0.2", "198.51.100.7"),
        (1, "2001:db8::7", "2001:db8::7"),
        (1, "10.0.0.1, 2001:DB8:0:0::7", "2001:db8::7"),  # one spelling per address
    ],
)
def test_behind_proxies_the_nth_address_from_the_right_is_the_client(settings, proxies, forwarded, expected):
    assert address(settings, proxies, forwarded=forwarded) == expected


@pytest.mark.parametrize(
    ("proxies", "forwarded"),
    [
        (1, None),  # a request that did not come through the proxy
        (1, ""),
        (2, "198.51.100.7"),  # fewer entries than proxies: the chain is not the configured one
        (1, "10.0.0.1, not-an-address"),  # no proxy writes this
        (1, "10.0.0.1, "),
    ],
)
def test_a_header_that_proxies_did_not_write_falls_back_to_the_peer(settings, proxies, forwarded):
    assert address(settings, proxies, forwarded=forwarded) == "203.0.113.9"


def test_drf_throttles_use_the_same_address(settings, production_rates, anon_client, db):
    settings.THROTTLE_NUM_PROXIES = 1
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "login": "2/min"}

    def sign_in(forwarded: str):
        return anon_client.post(
            "/auth/token", {"email": "x@example.com", "password": "wrong"}, format="json",
            REMOTE_ADDR="172.16.0.1", HTTP_X_FORWARDED_FOR=forwarded,
        ).status_code  # fmt: skip

    assert [sign_in(f"10.0.0.{i}, 198.51.100.7") for i in range(3)] == [400, 400, 429]
    assert sign_in("198.51.100.8") == 400  # another client behind the same proxy has its own budget
