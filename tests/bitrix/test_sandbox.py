"""The sandbox itself: counters, control endpoints, limits, faults, events, persistence, bad input."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import pytest
import requests

from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.errors import BitrixError
from devtools.sandbox.server import SandboxServer


def control(sandbox: SandboxServer, path: str, payload: dict | None = None) -> requests.Response:
    url = f"{sandbox.base_url}/_sandbox/{path}"
    return requests.get(url) if payload is None else requests.post(url, json=payload)


def test_stats_count_requests_operations_and_duplicates(sandbox, client):
    client.add("deal", {"ORIGIN_ID": "order-1"})
    client.batch({f"k{i}": ("crm.deal.add", {"fields": {"ORIGIN_ID": "order-1"}}) for i in range(2)})
    client.add("contact", {"ORIGIN_ID": "user-1"})
    with pytest.raises(BitrixError):
        client.get("deal", 99)

    stats = control(sandbox, "stats").json()

    assert stats["requests"] == 4
    assert stats["by_method"] == {"crm.deal.add": 1, "batch": 1, "crm.contact.add": 1, "crm.deal.get": 1}
    assert stats["operations"] == 5
    assert stats["commands_by_method"]["crm.deal.add"] == 3
    assert (stats["deals"], stats["contacts"]) == (3, 1)
    assert stats["duplicates"] == {"deal": {"order-1": 3}, "contact": {}}
    assert stats["errors"] == {"": 1}


def test_a_batch_is_one_request_for_the_limit(sandbox, client):
    control(sandbox, "limit", {"rate": 1, "burst": 3})
    fifty = {f"k{i}": ("crm.deal.add", {"fields": {"TITLE": str(i)}}) for i in range(50)}

    for _ in range(3):
        client.batch(fifty)
    with pytest.raises(BitrixError, match="QUERY_LIMIT_EXCEEDED"):
        client.batch(fifty)

    stats = sandbox.stats()
    assert (stats["deals"], stats["rate_limited"], stats["limit"]) == (150, 1, {"rate": 1, "burst": 3})


def test_control_endpoints_set_faults_list_records_and_move_deals(sandbox, client):
    deal_id = client.add("deal", {"TITLE": "x"})

    faults = control(sandbox, "faults", {"latency_ms": 5, "operation_limits": {"crm.deal.get": 10}}).json()
    records = control(sandbox, "records/deal").json()
    moved = control(sandbox, f"deals/{deal_id}/stage", {"stage_id": "WON"}).json()
    missing = control(sandbox, "deals/999/stage", {"stage_id": "WON"})
    bad = control(sandbox, "faults", {"no_such_fault": 1})
    unknown = control(sandbox, "nothing-here")

    assert faults["latency_ms"] == 5.0 and "crm.deal.get" in faults["operation_limits"]
    assert [r["TITLE"] for r in records] == ["x"]
    assert moved["STAGE_ID"] == "WON" and moved["MODIFY_BY_ID"] == "2"
    assert (missing.status_code, bad.status_code, unknown.status_code) == (404, 400, 404)
    assert "no_such_fault" in bad.json()["error_description"]

    assert control(sandbox, "reset", {}).json() == {"ok": True}
    assert sandbox.stats()["deals"] == 0 and sandbox.stats()["requests"] == 0
    assert control(sandbox, "faults").json()["operation_limits"] == {}


def test_seeded_faults_repeat_exactly(sandbox, client):
    def run() -> list[bool]:
        sandbox.set_faults(error_500_share=0.5, seed=42)
        outcomes = []
        for _ in range(20):
            try:
                client.call("profile")
                outcomes.append(True)
            except BitrixError:
                outcomes.append(False)
        return outcomes

    first = run()

    assert first == run()
    assert 3 < first.count(False) < 17
    assert sandbox.stats()["faults"]["error_500"] == 2 * first.count(False)


def test_records_persist_in_sqlite(tmp_path, webhook_code):
    db_path = str(tmp_path / "sandbox.sqlite3")
    with SandboxServer(code=webhook_code, db_path=db_path) as first:
        client = BitrixClient(first.webhook_url)
        contact_id = client.add("contact", {"NAME": "Ёжик 😀", "EMAIL": [{"VALUE": "a@example.com"}]})
        client.add("deal", {"ORIGIN_ID": "order-1", "CONTACT_ID": contact_id})

    with SandboxServer(code=webhook_code, db_path=db_path) as second:
        client = BitrixClient(second.webhook_url)
        assert client.get("contact", contact_id)["NAME"] == "Ёжик 😀"
        assert client.find_by_origin("deal", "order-1") == 1
        new_contact = client.add("contact", {"EMAIL": [{"VALUE": "b@example.com"}]})
        assert new_contact == 2  # IDs are never reused
        assert client.get("contact", new_contact)["EMAIL"][0]["ID"] == "2"


def test_restart_keeps_port_and_records(sandbox, client):
    client.add("deal", {"TITLE": "before"})
    port = sandbox.port
    sandbox.stop()
    with pytest.raises(BitrixError) as caught:
        client.call("profile")  # the kept-alive connection was closed too
    sandbox.start()

    assert caught.value.code == "CONNECTION_ERROR"
    assert sandbox.port == port
    assert client.get("deal", 1)["TITLE"] == "before"


def test_multifield_entries_are_replaced_by_id_or_appended(client):
    contact_id = client.add(
        "contact", {"EMAIL": [{"VALUE": "a@example.com"}, {"VALUE": "b@example.com", "VALUE_TYPE": "HOME"}]}
    )
    a, b = client.get("contact", contact_id)["EMAIL"]

    client.update("contact", contact_id, {"EMAIL": [{"ID": a["ID"], "VALUE": "a2@example.com"}]})
    client.update("contact", contact_id, {"EMAIL": [{"ID": b["ID"], "DELETE": "Y"}, {"VALUE": "c@example.com"}]})
    emails = client.get("contact", contact_id)["EMAIL"]

    assert [(e["VALUE"], e["VALUE_TYPE"]) for e in emails] == [("a2@example.com", "WORK"), ("c@example.com", "WORK")]
    assert emails[0]["ID"] == a["ID"]


def test_top_level_names_are_case_insensitive(sandbox):
    added = requests.post(sandbox.webhook_url + "crm.deal.add", json={"FIELDS": {"TITLE": "upper"}}).json()
    read = requests.post(sandbox.webhook_url + "crm.deal.get", json={"Id": added["result"]}).json()

    assert read["result"]["TITLE"] == "upper"


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "code"),
    [
        ("crm.deal.add", b"{not json", {"Content-Type": "application/json"}, 400, "INVALID_REQUEST"),
        ("crm.deal.add", b"[1, 2]", {"Content-Type": "application/json"}, 400, "INVALID_REQUEST"),
        ("crm.deal.add", b"\xff\xfe", {"Content-Type": "application/x-www-form-urlencoded"}, 400, "INVALID_REQUEST"),
        ("crm.deal.add", b'{"fields": "oops"}', {"Content-Type": "application/json"}, 400, ""),
        ("crm.deal.list", b'{"filter": [1]}', {"Content-Type": "application/json"}, 400, "ERROR_ARGUMENT"),
        ("crm.deal.get", b'{"id": "abc"}', {"Content-Type": "application/json"}, 400, ""),
        ("batch", b'{"cmd": "profile"}', {"Content-Type": "application/json"}, 400, "ERROR_ARGUMENT"),
    ],
)
def test_malformed_requests_get_an_error_body(sandbox, path, body, headers, status, code):
    response = requests.post(sandbox.webhook_url + path, data=body, headers=headers)

    assert (response.status_code, response.json()["error"]) == (status, code)
    assert "Traceback" not in response.text


def test_bad_paths_and_raw_garbage(sandbox):
    no_method = requests.get(f"{sandbox.base_url}/rest/1/")
    elsewhere = requests.get(f"{sandbox.base_url}/index.php")
    with socket.create_connection(("127.0.0.1", sandbox.port)) as raw:
        raw.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        garbage = b"".join(iter(lambda: raw.recv(4096), b"")).decode()  # until the sandbox closes

    assert (no_method.status_code, no_method.json()["error"]) == (401, "NO_AUTH_FOUND")
    assert elsewhere.status_code == 404
    assert garbage.startswith("HTTP/1.1 400") and '"error": "INVALID_REQUEST"' in garbage
    assert "Traceback" not in garbage


# -- outbound events ---------------------------------------------------------------------
class EventCollector:
    """A stand-in for our webhook endpoint: records the forms the sandbox posts."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.arrived = threading.Condition()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                with collector.arrived:
                    collector.received.append(dict(parse_qsl(body)))
                    collector.arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/bitrix/webhook"

    def wait_for(self, count: int) -> list[dict]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.received) >= count, timeout=5)
            return list(self.received)


@pytest.fixture
def collector():
    events = EventCollector()
    yield events
    events.server.shutdown()


def test_changes_by_others_fire_events(webhook_code, collector):
    with SandboxServer(code=webhook_code, manager_code="manager-code") as sandbox:
        control(sandbox, "events", {"handler_url": collector.url, "application_token": "app-token"})
        ours = BitrixClient(sandbox.webhook_url)
        manager = BitrixClient(sandbox.manager_webhook_url)
        deal_id = ours.add("deal", {"TITLE": "ours"})  # our own change: no event
        ours.update("deal", deal_id, {"TITLE": "still ours"})

        sandbox.move_deal_stage(deal_id, "WON")
        manager.update("deal", deal_id, {"COMMENTS": "edited in the portal"})
        control(sandbox, f"deals/{deal_id}/delete", {})
        received = collector.wait_for(3)

        assert [e["event"] for e in received] == ["ONCRMDEALUPDATE", "ONCRMDEALUPDATE", "ONCRMDEALDELETE"]
        first = received[0]
        assert first["data[FIELDS][ID]"] == str(deal_id)
        assert first["auth[application_token]"] == "app-token"
        assert first["auth[domain]"] == f"127.0.0.1:{sandbox.port}"
        assert {"ts", "auth[member_id]", "auth[client_endpoint]", "event_handler_id"} <= set(first)
    assert sandbox.stats()["events"] == {"sent": 3, "failed": 0}  # counted once the sender has stopped


def test_echo_own_changes_like_a_real_portal(sandbox, client, collector):
    sandbox.set_events(handler_url=collector.url, application_token="t", echo_own_changes=True)

    client.add("deal", {"TITLE": "x"})

    assert collector.wait_for(1)[0]["event"] == "ONCRMDEALADD"


def test_unreachable_handler_is_counted_not_fatal(sandbox, client):
    sandbox.set_events(handler_url="http://127.0.0.1:9/nowhere", echo_own_changes=True)

    client.add("deal", {"TITLE": "x"})
    sandbox.stop()  # waits for the delivery thread

    assert sandbox.stats()["events"] == {"sent": 0, "failed": 1}


def test_control_json_is_plain(sandbox):
    response = control(sandbox, "events")

    assert response.headers["Content-Type"].startswith("application/json")
    assert json.loads(response.text) == {"handler_url": None, "application_token": "", "echo_own_changes": False}
