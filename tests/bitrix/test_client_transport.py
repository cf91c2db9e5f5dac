"""The client's one HTTP entry point, against a real HTTP server that records what it is sent.

Written for the mutants mutation testing found alive in ``_request``, ``_post`` and ``_decode``
(docs/mutation.md): the request as it goes over the wire, the counters the heartbeat reports,
and the exact error each kind of broken answer becomes.
"""

from __future__ import annotations

import datetime
import json
import time
from decimal import Decimal

import pytest

from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.errors import BitrixError, ErrorKind
from crmbridge.bitrix.rate_limit import InProcessRateLimiter
from tests.bitrix.conftest import SECRET


def failure(call) -> BitrixError:
    with pytest.raises(BitrixError) as caught:
        call()
    return caught.value


def test_a_call_posts_utf8_json_to_the_method_url(portal):
    client = BitrixClient(portal.url, read_timeout=5)

    client.call("crm.deal.add", {"fields": {"TITLE": "Заказ №1", "OPPORTUNITY": Decimal("9.50"),
                                            "BEGINDATE": datetime.date(2026, 12, 6)}})  # fmt: skip

    sent = portal.requests[0]
    assert sent["path"] == f"/rest/7/{SECRET}/crm.deal.add"
    assert sent["headers"]["Content-Type"] == "application/json; charset=utf-8"
    assert sent["headers"]["Accept"] == "application/json"
    assert "Заказ №1".encode() in sent["raw"]  # as UTF-8, not \\u escapes
    fields = {"TITLE": "Заказ №1", "OPPORTUNITY": "9.50", "BEGINDATE": "2026-12-06"}  # str() for the rest
    assert json.loads(sent["raw"]) == {"fields": fields}


def test_the_counters_add_up_requests_their_seconds_and_refusals(portal):
    client = BitrixClient(portal.url, read_timeout=5)
    portal.delay = 0.05
    started = time.monotonic()

    client.call("profile")
    client.call("profile")
    wall = time.monotonic() - started

    assert client.calls == 2
    assert 0.1 <= client.call_seconds <= wall
    assert client.rejects == 0
    portal.status, portal.body = 400, b'{"error": "ERROR_CORE"}'
    failure(lambda: client.call("profile"))
    assert (client.calls, client.rejects) == (3, 1)


def test_the_limiter_is_asked_for_the_method_being_called(portal):
    asked = []

    class Recording(InProcessRateLimiter):
        def _try_acquire(self, method: str) -> float:
            asked.append(method)
            return super()._try_acquire(method)

    BitrixClient(portal.url, limiter=Recording(rate=10, burst=5), read_timeout=5).call("crm.deal.list")

    assert asked == ["crm.deal.list"]


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [(200, b'{"error": "ERROR_CORE", "result": 1}', "ERROR_CORE"),  # an error beside a result
     (400, b'{"result": 1}', "HTTP_400")],  # a result under a refusing status
)  # fmt: skip
def test_an_error_or_a_status_of_400_is_a_refusal(portal, status, body, code):
    portal.status, portal.body = status, body
    client = BitrixClient(portal.url, read_timeout=5)

    error = failure(lambda: client.call("crm.deal.get"))

    assert (error.code, error.http_status, error.method, client.rejects) == (code, status, "crm.deal.get", 1)


def test_a_status_just_below_400_with_a_result_is_an_answer(portal):
    portal.status, portal.body = 399, b'{"result": 5}'
    client = BitrixClient(portal.url, read_timeout=5)

    assert client.call("crm.deal.get") == 5
    assert client.rejects == 0


def test_an_answer_without_a_result_is_an_invalid_response(portal):
    portal.body = b'{"total": 0}'

    error = failure(lambda: BitrixClient(portal.url, read_timeout=5).call("crm.deal.get"))

    assert (error.code, error.description, error.http_status, error.method) == (
        "INVALID_RESPONSE", "answer without a result", 200, "crm.deal.get")  # fmt: skip


@pytest.mark.parametrize(
    ("content_type", "body", "named"),
    [("text/plain; charset=utf-8", b"Bad gateway", "text/plain, 11 bytes"),
     (None, b"<html></html>", "no content type, 13 bytes"),
     ("application/json", b"[1, 2]", "application/json, 6 bytes")],  # JSON, but not an object
)  # fmt: skip
def test_an_answer_that_is_not_a_json_object_is_a_retryable_invalid_response(portal, content_type, body, named):
    portal.status, portal.content_type, portal.body = 502, content_type, body

    error = failure(lambda: BitrixClient(portal.url, read_timeout=5).call("crm.deal.get"))

    assert (error.code, error.http_status, error.kind, error.method) == (
        "INVALID_RESPONSE", 502, ErrorKind.RETRY, "crm.deal.get")  # fmt: skip
    assert error.description == f"the answer is not a JSON object ({named})"


def test_a_timeout_names_the_read_timeout_and_the_method(portal):
    portal.delay = 1.0

    error = failure(lambda: BitrixClient(portal.url, read_timeout=0.25).call("crm.deal.add"))

    assert (error.code, error.method) == ("TIMEOUT", "crm.deal.add")
    assert error.description == "no answer within 0.25 s; the portal may have applied the request"


def test_a_refused_connection_names_the_redacted_portal_never_the_code():
    from devtools.testing.ports import free_port

    port = free_port()
    client = BitrixClient(f"http://127.0.0.1:{port}/rest/7/{SECRET}/", connect_timeout=1)

    error = failure(lambda: client.call("crm.deal.add"))

    assert (error.code, error.method) == ("CONNECTION_ERROR", "crm.deal.add")
    assert error.description.startswith(f"connection to http://127.0.0.1:{port}/rest/7/****/ failed: ")
    assert "Connection refused" in error.description or "refused" in error.description.lower()
    assert SECRET not in str(error)


def test_any_other_transport_failure_is_an_http_error_named_by_its_type(portal):
    portal.redirect = True  # a proxy sending the client round in circles

    error = failure(lambda: BitrixClient(portal.url, read_timeout=5).call("crm.deal.add"))

    assert (error.code, error.method) == ("HTTP_ERROR", "crm.deal.add")
    assert error.description == "TooManyRedirects: Exceeded 30 redirects."


def test_find_by_origin_asks_for_the_oldest_id_of_ours_and_skips_odd_items(portal):
    """The parameters as sent: the sandbox, like the portal, ignores ``order``/``select`` and the case
    of top-level names, so only the wire shows them."""
    portal.body = b'{"result": [{"ID": "9"}, "junk", {"NAME": "no id"}, {"ID": "4"}], "total": 3}'
    client = BitrixClient(portal.url, read_timeout=5, originator_id="shop")

    assert client.find_by_origin("deal", "order-7") == 4
    assert portal.requests[0]["path"].endswith("/crm.deal.list")
    assert json.loads(portal.requests[0]["raw"]) == {
        "filter": {"=ORIGIN_ID": "order-7", "=ORIGINATOR_ID": "shop"},
        "select": ["ID"],
        "order": {"ID": "ASC"},
        "start": -1,
    }


def test_list_all_stops_at_a_next_that_does_not_move_on_and_after_the_page_limit(portal, monkeypatch):
    """``list_all`` follows ``next``; a portal (or proxy) answering the same ``next`` again, or ``next``
    forever, costs a bounded number of requests, never a loop."""
    from crmbridge.bitrix import client as client_module

    client = BitrixClient(portal.url, read_timeout=5)
    portal.body = b'{"result": [{"ID": "1"}], "total": 3, "next": 0}'
    assert client.list_all("crm.deal.userfield.list") == [{"ID": "1"}]  # next 0: not "more"
    assert len(portal.requests) == 1

    portal.body = b'{"result": [{"ID": "1"}], "total": 999, "next": "50"}'  # as text, and never advancing
    assert len(client.list_all("crm.deal.userfield.list", {"filter": {"X": 1}})) == 2
    starts = [json.loads(r["raw"])["start"] for r in portal.requests[1:]]
    assert starts == [0, 50]
    assert json.loads(portal.requests[-1]["raw"])["filter"] == {"X": 1}

    monkeypatch.setattr(client_module, "MAX_LIST_PAGES", 3)
    portal.requests.clear()
    answers = iter(range(50, 10_000, 50))

    def advancing() -> bytes:
        return json.dumps({"result": [{}], "next": next(answers)}).encode()

    portal.body = advancing
    items = client.list_all("crm.deal.userfield.list")
    assert len(portal.requests) == 3 and len(items) == 3
    assert [json.loads(r["raw"])["start"] for r in portal.requests] == [0, 50, 100]


def test_list_all_of_an_answer_that_is_no_page_of_items_is_no_items(portal):
    """Found by mutation testing: an object (``crm.category.list`` answers ``{"categories": [...]}``) or
    ``null`` where a page of items belongs adds nothing, and is no error."""
    client = BitrixClient(portal.url, read_timeout=5)
    portal.body = b'{"result": {"categories": [{"id": 3}]}, "total": 1}'
    assert client.list_all("crm.category.list") == []
    portal.body = b'{"result": null}'
    assert client.list_all("crm.deal.userfield.list") == []


@pytest.mark.parametrize(("halt", "sent"), [(True, 1), (False, 0)])
def test_a_batch_sends_halt_and_its_commands_as_the_portal_spells_them(portal, halt, sent):
    """Found by mutation testing: the sandbox reads top-level names in any case, so only the wire shows them."""
    portal.body = b'{"result": {"result": {"a": 1, "b": 2}}}'

    BitrixClient(portal.url, read_timeout=5).batch({"a": ("profile", {}), "b": ("crm.deal.get", {"id": 7})}, halt=halt)

    assert portal.requests[0]["path"].endswith("/batch")
    assert json.loads(portal.requests[0]["raw"]) == {"halt": sent, "cmd": {"a": "profile", "b": "crm.deal.get?id=7"}}


def test_a_batch_keeps_the_next_pages_of_its_own_commands_only(portal):
    portal.body = json.dumps({"result": {
        "result": {"a": [{}], "b": [{}]}, "result_next": {"a": 50, "b": 0, "other": 100},
    }}).encode()  # fmt: skip

    outcome = BitrixClient(portal.url, read_timeout=5).batch({"a": ("crm.deal.list", {}), "b": ("crm.deal.list", {})})

    assert outcome.next == {"a": 50}


def test_a_batch_of_commands_named_0_1_reads_the_results_php_sends_as_a_list(portal):
    portal.body = b'{"result": {"result": ["first", "second"], "result_error": []}}'

    outcome = BitrixClient(portal.url, read_timeout=5).batch({"0": ("profile", {}), "1": ("profile", {})})

    assert (outcome.results, outcome.errors) == ({"0": "first", "1": "second"}, {})


def test_the_record_helpers_name_the_method_and_the_record_as_the_portal_spells_them(portal):
    """``crm.<entity>.add/update/get`` with lower-case ``id`` / ``fields``: the sandbox, like the portal, reads
    method and top-level names in any case, so only the wire shows them."""
    client = BitrixClient(portal.url, read_timeout=5)

    portal.body = b'{"result": 41}'
    assert client.add("deal", {"TITLE": "t"}) == 41
    portal.body = b'{"result": true}'
    assert client.update("deal", 41, {"TITLE": "u"}) is True
    portal.body = b'{"result": {"ID": "7"}}'
    assert client.get("contact", 7) == {"ID": "7"}

    sent = [(r["path"].rsplit("/", 1)[1], json.loads(r["raw"])) for r in portal.requests]
    assert sent == [
        ("crm.deal.add", {"fields": {"TITLE": "t"}, "params": {"REGISTER_SONET_EVENT": "N"}}),
        ("crm.deal.update", {"id": 41, "fields": {"TITLE": "u"}}),
        ("crm.contact.get", {"id": 7}),
    ]


@pytest.mark.parametrize(
    ("sent", "start"), [(50, 50), ("100", 100), (1, 1), (0, None), (-50, None), (True, None), ("x", None), (None, None)]
)
def test_a_next_is_a_positive_start_in_any_spelling(sent, start):
    """``next`` as the portal (or a proxy) may spell it; anything not a positive number ends the listing."""
    from crmbridge.bitrix.client import _page_start

    assert _page_start(sent) == start
