"""Every error class, from a real portal-like server over HTTP, classified for the worker."""

from __future__ import annotations

import json
import time

import pytest
from django.core.exceptions import ImproperlyConfigured

from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.errors import BitrixError, ErrorKind, classify
from crmbridge.bitrix.rate_limit import InProcessRateLimiter
from devtools.testing.ports import free_port

RETRY, CONFIG, PERMANENT = ErrorKind.RETRY, ErrorKind.CONFIG, ErrorKind.PERMANENT


def failure(call) -> BitrixError:
    with pytest.raises(BitrixError) as caught:
        call()
    return caught.value


def test_wrong_webhook_code_is_a_configuration_error(sandbox):
    wrong = BitrixClient(f"{sandbox.base_url}/rest/1/not-the-code/")

    error = failure(lambda: wrong.call("profile"))

    assert (error.code, error.http_status, error.kind) == ("NO_AUTH_FOUND", 401, CONFIG)


@pytest.mark.parametrize(
    ("auth_error", "status"),
    [("expired_token", 401), ("invalid_token", 401), ("ACCESS_DENIED", 403), ("insufficient_scope", 403)],
)
def test_expired_or_forbidden_webhook_is_a_configuration_error(sandbox, client, auth_error, status):
    sandbox.set_faults(auth_error=auth_error)

    error = failure(lambda: client.call("profile"))

    assert (error.code, error.http_status, error.kind) == (auth_error, status, CONFIG)


def test_unknown_method_is_permanent(client):
    error = failure(lambda: client.call("crm.deal.frobnicate"))

    assert (error.code, error.http_status, error.kind) == ("ERROR_METHOD_NOT_FOUND", 404, PERMANENT)


def test_missing_records_are_permanent(client):
    deal = failure(lambda: client.get("deal", 999))
    contact = failure(lambda: client.update("contact", 999, {"NAME": "x"}))

    assert (deal.code, deal.description, deal.http_status, deal.kind) == ("", "Not found", 400, PERMANENT)
    assert (contact.description, contact.kind) == ("Contact is not found", PERMANENT)


def test_validation_error_is_permanent(client):
    error = failure(lambda: client.add("contact", {"NAME": "x", "EMAIL": [{"VALUE": "not-an-email"}]}))

    assert (error.code, error.http_status, error.kind) == ("ERROR_CORE", 400, PERMANENT)


def test_rate_limit_is_retryable_and_makes_every_process_back_off(sandbox, limited_client, limiter, redis_client):
    sandbox.set_limit(rate=0.5, burst=2)
    limited_client.call("profile")
    limited_client.call("profile")

    error = failure(lambda: limited_client.call("profile"))

    assert (error.code, error.http_status, error.kind) == ("QUERY_LIMIT_EXCEEDED", 503, RETRY)
    assert float(redis_client.get(f"{limiter.key}:penalty")) > time.time()  # shared: every process waits


def test_injected_503_and_500_are_retryable(sandbox, client):
    sandbox.set_faults(error_503_share=1.0)
    busy = failure(lambda: client.call("profile"))
    sandbox.set_faults(error_503_share=0.0, error_500_share=1.0)
    broken = failure(lambda: client.call("profile"))

    assert (busy.http_status, busy.kind) == (503, RETRY)
    assert (broken.code, broken.http_status, broken.kind) == ("INTERNAL_SERVER_ERROR", 500, RETRY)


def test_operation_time_limit_blocks_that_method_only(sandbox, limited_client, limiter):
    sandbox.set_faults(operation_limits={"crm.deal.add": 30})

    error = failure(lambda: limited_client.add("deal", {"TITLE": "x"}))

    assert (error.code, error.http_status, error.kind) == ("OPERATION_TIME_LIMIT", 429, RETRY)
    assert 25 < error.retry_after <= 30
    assert limiter.method_blocked_until("crm.deal.add") == pytest.approx(time.time() + 30, abs=5)
    requests_before = sandbox.stats()["requests"]
    again = failure(lambda: limited_client.add("deal", {"TITLE": "x"}))  # refused here, not sent
    assert again.code == "OPERATION_TIME_LIMIT" and again.retry_after > 25
    assert sandbox.stats()["requests"] == requests_before
    assert limited_client.add("contact", {"NAME": "other methods still work"}) == 1


def test_timeout_is_retryable_and_the_portal_may_have_applied_it(sandbox):
    slow = BitrixClient(sandbox.webhook_url, read_timeout=0.3)
    sandbox.set_faults(timeout_share=1.0, timeout_seconds=2.0)

    error = failure(lambda: slow.add("deal", {"TITLE": "slow"}))

    assert (error.code, error.http_status, error.kind) == ("TIMEOUT", None, RETRY)
    assert sandbox.stats()["deals"] == 1  # why a blind retry of an add makes duplicates


def test_html_body_is_a_retryable_transport_error(sandbox, client):
    sandbox.set_faults(html_share=1.0)

    error = failure(lambda: client.call("profile"))

    assert (error.code, error.http_status, error.kind) == ("INVALID_RESPONSE", 502, RETRY)
    assert "text/html" in error.description


def test_connection_refused_is_retryable():
    nowhere = BitrixClient(f"http://127.0.0.1:{free_port()}/rest/1/some-secret-code/", connect_timeout=1)

    error = failure(lambda: nowhere.call("profile"))

    assert (error.code, error.kind) == ("CONNECTION_ERROR", RETRY)


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("QUERY_LIMIT_EXCEEDED", 503, RETRY),
        ("OVERLOAD_LIMIT", 503, RETRY),
        ("OPERATION_TIME_LIMIT", None, RETRY),
        ("INTERNAL_SERVER_ERROR", None, RETRY),
        ("", 502, RETRY),
        ("INVALID_CREDENTIALS", 401, CONFIG),
        ("insufficient_scope", None, CONFIG),
        ("ACCESS_DENIED", 403, CONFIG),
        ("PORTAL_DELETED", 410, CONFIG),
        ("INVALID_REQUEST", 400, PERMANENT),
        ("ERROR_BATCH_LENGTH_EXCEEDED", 400, PERMANENT),
        ("", None, PERMANENT),
        # The status decides for an unknown code (found by mutation testing: the edges were not pinned).
        ("", 401, CONFIG),
        ("SOMETHING", 403, CONFIG),
        ("", 402, PERMANENT),
        ("", 500, RETRY),
        ("", 501, RETRY),
        ("", 499, PERMANENT),
        ("", 408, RETRY),
        ("", 409, PERMANENT),
        ("", 429, RETRY),
        ("", 430, PERMANENT),
        (None, 404, PERMANENT),
    ],
)
def test_each_error_code_and_status_has_its_kind(code, status, kind):
    assert classify(code, status) is kind


def test_from_settings_needs_a_webhook_url(settings):
    settings.BITRIX_WEBHOOK_URL = ""

    with pytest.raises(ImproperlyConfigured, match=r"^BITRIX_WEBHOOK_URL is not set$"):
        BitrixClient.from_settings()


def test_from_settings_shares_the_redis_limiter(settings, sandbox):
    settings.BITRIX_WEBHOOK_URL = sandbox.webhook_url
    settings.BITRIX_RATE_LIMIT_PER_SECOND = 5
    settings.BITRIX_RATE_LIMIT_BURST = 250

    client = BitrixClient.from_settings()

    assert client.call("profile")["ID"] == "1"
    assert (client.limiter.rate, client.limiter.burst, client.limiter.key) == (5, 250, "bitrix:ratelimit")
    assert client.originator_id == settings.BITRIX_ORIGINATOR_ID


def test_from_settings_takes_the_timeouts(settings, portal):
    """Found by mutation testing: the read timeout names itself in the error of a slow portal."""
    settings.BITRIX_WEBHOOK_URL = portal.url
    settings.BITRIX_HTTP_CONNECT_TIMEOUT = 2.5
    settings.BITRIX_HTTP_READ_TIMEOUT = 0.2
    portal.delay = 0.6

    client = BitrixClient.from_settings()
    error = failure(lambda: client.call("profile"))

    assert client.timeout == (2.5, 0.2)
    assert (error.code, error.description) == (
        "TIMEOUT",
        "no answer within 0.2 s; the portal may have applied the request",
    )


@pytest.fixture
def answering(portal):
    """The portal stand-in (``tests/bitrix/conftest.py``) answering every request with the status and JSON body set."""
    reply = {"status": 503, "body": {}}
    portal.status = lambda: reply["status"]
    portal.body = lambda: json.dumps(reply["body"]).encode()
    return portal.url, reply


@pytest.mark.parametrize(("code", "penalty"), [("OVERLOAD_LIMIT", 30.0), ("overload_limit", 30.0),
                                              ("QUERY_LIMIT_EXCEEDED", 1.0)])  # fmt: skip
def test_a_limit_answer_holds_the_limiter_for_its_penalty(answering, code, penalty):
    """Found by mutation testing: the overload penalty (30 s) was not told apart from the query limit's (1 s)."""
    url, reply = answering
    reply.update(status=503, body={"error": code})
    limiter = InProcessRateLimiter(rate=10, burst=5)
    client = BitrixClient(url, limiter=limiter, read_timeout=5)

    error = failure(lambda: client.call("crm.deal.add", {"fields": {}}))

    assert (error.code, error.description, error.http_status, error.method) == (code, "", 503, "crm.deal.add")
    assert (error.kind, error.retry_after) == (RETRY, None)
    assert limiter.bucket.try_add() == pytest.approx(penalty + 0.1, abs=0.5)  # full until the penalty ends


def test_an_error_without_a_code_is_named_by_its_status(answering):
    url, reply = answering
    reply.update(status=404, body={"unexpected": "shape"})

    error = failure(lambda: BitrixClient(url, read_timeout=5).call("crm.deal.get", {"id": 1}))

    assert (error.code, error.description, error.http_status, error.kind) == ("HTTP_404", "", 404, PERMANENT)


@pytest.mark.parametrize(
    ("status", "body", "code", "kind"),
    [
        (410, {"error": "PORTAL_DELETED"}, "PORTAL_DELETED", CONFIG),  # the code decides (410 alone: permanent)
        (500, {"error": "PORTAL_DELETED"}, "PORTAL_DELETED", CONFIG),  # (500 alone: retry)
        (502, {"unexpected": "shape"}, "HTTP_502", RETRY),  # the status decides for an unknown code
        (401, {"error": "SOMETHING_NEW"}, "SOMETHING_NEW", CONFIG),
    ],
)
def test_an_answers_kind_comes_from_its_code_then_its_status(answering, status, body, code, kind):
    """Found by mutation testing: over HTTP, both the code and the status reach ``classify``."""
    url, reply = answering
    reply.update(status=status, body=body)

    error = failure(lambda: BitrixClient(url, read_timeout=5).call("crm.deal.get", {"id": 1}))

    assert (error.code, error.http_status, error.kind) == (code, status, kind)


def test_an_operation_time_limit_blocks_the_method_until_the_reset_the_portal_names(answering):
    url, reply = answering
    limiter = InProcessRateLimiter(rate=10, burst=5)
    client = BitrixClient(url, limiter=limiter, read_timeout=5)
    reset_at = time.time() + 100
    reply.update(status=429, body={"error": "OPERATION_TIME_LIMIT", "operating_reset_at": reset_at})

    error = failure(lambda: client.call("crm.deal.update", {"id": 1}))

    assert (error.code, error.http_status, error.kind) == ("OPERATION_TIME_LIMIT", 429, RETRY)
    assert error.retry_after == pytest.approx(100, abs=2)
    assert limiter.method_blocked_until("crm.deal.update") == reset_at
    assert limiter.method_blocked_until("crm.deal.add") is None


def test_an_operation_time_limit_takes_the_errors_own_reset_over_the_answers_time_block(answering):
    """Found by mutation testing: every answer has a ``time`` block; the reset named beside the error wins."""
    url, reply = answering
    limiter = InProcessRateLimiter(rate=10, burst=5)
    reset_at = time.time() + 100
    reply.update(status=429, body={"error": "OPERATION_TIME_LIMIT", "operating_reset_at": reset_at,
                                   "time": {"operating_reset_at": reset_at + 500}})  # fmt: skip

    error = failure(lambda: BitrixClient(url, limiter=limiter, read_timeout=5).call("crm.deal.update", {"id": 1}))

    assert error.retry_after == pytest.approx(100, abs=2)
    assert limiter.method_blocked_until("crm.deal.update") == reset_at


def test_an_operation_time_limit_whose_reset_has_passed_is_retried_at_once(answering):
    """Found by mutation testing: a reset time already past means no wait (not a second's)."""
    url, reply = answering
    reply.update(status=429, body={"error": "OPERATION_TIME_LIMIT", "operating_reset_at": time.time() - 30})

    error = failure(lambda: BitrixClient(url, read_timeout=5).call("crm.deal.update", {"id": 1}))

    assert error.retry_after == 0.0


def test_an_operation_time_limit_without_a_reset_blocks_the_method_for_a_minute(answering):
    url, reply = answering
    limiter = InProcessRateLimiter(rate=10, burst=5)
    reply.update(status=429, body={"error": "OPERATION_TIME_LIMIT", "time": {"start": 1}})
    started = time.time()

    error = failure(lambda: BitrixClient(url, limiter=limiter, read_timeout=5).call("crm.deal.update", {"id": 1}))

    assert error.retry_after == pytest.approx(60, abs=2)
    assert limiter.method_blocked_until("crm.deal.update") == pytest.approx(started + 60, abs=2)


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (BitrixError("QUERY_LIMIT_EXCEEDED", "Too many", http_status=503, method="batch"),
         "QUERY_LIMIT_EXCEEDED HTTP 503 in batch: Too many"),
        (BitrixError("NOT_FOUND", "Not found"), "NOT_FOUND: Not found"),
        (BitrixError("TIMEOUT"), "TIMEOUT"),
        (BitrixError("", ""), "ERROR"),
    ],
)  # fmt: skip
def test_an_errors_text_names_code_status_method_and_description(error, text):
    assert str(error) == text


def test_a_blocked_method_is_refused_without_a_request(answering):
    url, reply = answering
    limiter = InProcessRateLimiter(rate=10, burst=5)
    limiter.block_method("crm.deal.update", time.time() + 50)
    reply.update(status=200, body={"result": True})  # would succeed if asked

    error = failure(lambda: BitrixClient(url, limiter=limiter, read_timeout=5).call("crm.deal.update", {"id": 1}))

    assert (error.code, error.http_status, error.kind, error.method) == (
        "OPERATION_TIME_LIMIT",
        429,
        RETRY,
        "crm.deal.update",
    )
    assert error.description in {
        f"method blocked by the portal's operating-time limit for {s} s more" for s in (49, 50)
    }
    assert error.retry_after == pytest.approx(50, abs=2)


def test_a_batch_answer_without_its_maps_is_an_invalid_response(answering):
    url, reply = answering
    reply.update(status=200, body={"result": "oops"})

    error = failure(lambda: BitrixClient(url, read_timeout=5).batch({"a": ("profile", {})}))

    assert (error.code, error.description, error.method) == (
        "INVALID_RESPONSE",
        "batch answered without its result maps",
        "batch",
    )


def test_command_errors_in_a_batch_keep_their_method_and_a_time_limit_blocks_it(answering):
    url, reply = answering
    reset_at = time.time() + 100
    reply.update(status=200, body={"result": {
        "result": {"ok": 7},
        "result_error": {"odd": "boom", "slow": {"error": "OPERATION_TIME_LIMIT", "error_description": "blocked"}},
        "result_time": {"slow": {"operating_reset_at": reset_at}},
    }})  # fmt: skip
    limiter = InProcessRateLimiter(rate=10, burst=5)
    commands = {"ok": ("profile", {}), "odd": ("crm.deal.add", {}), "slow": ("crm.deal.update", {}),
                "never": ("crm.deal.get", {"id": 1})}  # fmt: skip

    outcome = BitrixClient(url, limiter=limiter, read_timeout=5).batch(commands)

    assert outcome.results == {"ok": 7}
    odd, slow, never = (outcome.errors[key] for key in ("odd", "slow", "never"))
    assert (odd.code, odd.description, odd.method, odd.http_status, odd.retry_after) == (
        "boom",
        "",
        "crm.deal.add",
        None,
        None,
    )
    assert (slow.code, slow.description, slow.method) == ("OPERATION_TIME_LIMIT", "blocked", "crm.deal.update")
    assert slow.retry_after == pytest.approx(100, abs=2)
    assert limiter.method_blocked_until("crm.deal.update") == reset_at
    assert (never.code, never.method) == ("NOT_EXECUTED", "crm.deal.get")
    assert never.description == "not executed: an earlier command failed and halt was set"


def test_an_error_keeps_its_parts_redacted_and_cut_and_says_them_in_its_message():
    error = BitrixError("X", "see https://p.example/rest/1/s3cr3t-c0de/x " + "d" * 2000, http_status=500, method="m")

    assert error.description.startswith("see https://p.example/rest/1/****/x ") and len(error.description) == 1000
    assert (error.method, error.args) == ("m", (str(error),))
    assert str(error).startswith("X HTTP 500 in m: see https://p.example/rest/1/****/x ddd")
    bare = BitrixError("Y")
    assert (bare.description, bare.method, bare.http_status, bare.kind, bare.retry_after) == ("", "", None, RETRY, None)
