"""Rate limits hold under parallel requests: a real server, 40 sign-in attempts at once, exactly the limit passes.

A get-then-set counter loses updates here (each of N parallel requests reads k
attempts and writes k+1), so a brute-forcer with N connections would get about
N times the limit. The requests go over real HTTP to Django's threaded WSGI
server (one thread per request, as ``live_server``, but with a listen backlog
that takes 40 connections at once); a barrier releases them together.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

from tests.inbound.conftest import event_form

pytestmark = pytest.mark.django_db(transaction=True)

PARALLEL = 40
LIMIT = 5


class BurstServer(ThreadedWSGIServer):
    request_queue_size = 2 * PARALLEL  # Django's 10 would reset connections of a burst


@pytest.fixture
def burst_server(transactional_db):
    """The project on a free loopback port, one thread per request (each with its own database connection)."""
    server = BurstServer(("127.0.0.1", 0), WSGIRequestHandler, allow_reuse_address=False)
    server.set_app(WSGIHandler())
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_port}"
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def limits(settings):
    """Everything generous except the scope a test sets to ``LIMIT``/min."""

    def set_limit(scope: str) -> None:
        settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, scope: f"{LIMIT}/min"}

    return set_limit


def in_parallel(send) -> list[requests.Response]:
    """``send(session)`` from ``PARALLEL`` threads, released at once by a barrier."""
    barrier = threading.Barrier(PARALLEL)

    def one(_: int) -> requests.Response:
        with requests.Session() as session:
            barrier.wait(timeout=30)
            return send(session)

    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(one, range(PARALLEL)))


def assert_exactly_the_limit_passed(responses: list[requests.Response], passed_status: int) -> None:
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [passed_status] * LIMIT + [429] * (PARALLEL - LIMIT), Counter(statuses)
    for response in responses:
        if response.status_code == 429:
            assert 0 < int(response.headers["Retry-After"]) <= 60


def test_parallel_sign_ins_from_one_address_pass_exactly_the_limit(limits, burst_server):
    limits("login")
    url = f"{burst_server.url}/auth/token"

    responses = in_parallel(lambda s: s.post(url, json={"email": "nobody@example.com", "password": "guess"}))

    assert_exactly_the_limit_passed(responses, 400)


def test_parallel_failed_sign_ins_of_one_account_pass_exactly_the_limit(limits, burst_server, alice):
    limits("login_failures")
    url = f"{burst_server.url}/auth/token"

    responses = in_parallel(lambda s: s.post(url, json={"email": alice.email, "password": "guess"}))

    assert_exactly_the_limit_passed(responses, 400)  # only LIMIT passwords were ever checked
    right = requests.post(url, json={"email": alice.email, "password": "S3cure-pass-1"}, timeout=10)
    assert right.status_code == 429  # the account stays blocked, even for the right password


def test_parallel_admin_logins_pass_exactly_the_limit(limits, burst_server, admin_user):
    limits("admin_login")
    url = f"{burst_server.url}/admin/login/"
    page = requests.get(url, timeout=10)
    form_token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    cookies = {"csrftoken": page.cookies["csrftoken"]}
    form = {"username": "admin", "password": "guess", "csrfmiddlewaretoken": form_token}

    responses = in_parallel(lambda s: s.post(url, data=form, cookies=cookies, headers={"Referer": url}))

    assert_exactly_the_limit_passed(responses, 200)  # 200: the form again, "wrong password"


def test_parallel_refused_webhook_tokens_pass_exactly_the_limit(limits, burst_server, settings):
    limits("webhook_refused")
    settings.BITRIX_INBOUND_TOKEN = "the-right-token"
    url = f"{burst_server.url}/bitrix/webhook"

    responses = in_parallel(lambda s: s.post(url, data=event_form(token="wrong")))

    assert_exactly_the_limit_passed(responses, 403)
