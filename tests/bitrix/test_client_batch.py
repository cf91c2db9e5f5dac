"""``batch``: up to 50 commands in one request, results and errors by key, ``$result`` references."""

from __future__ import annotations

import pytest
import requests

from crmbridge.bitrix.commands import result_ref
from crmbridge.bitrix.errors import BitrixError, ErrorKind

NAMES = ["Иван Петров", "Zoë 😀 & Co", "a=b&c=d", "[draft] 100%", "%25 not decoded twice", "+plus +"]


def test_mixed_results_and_references(client, sandbox):
    outcome = client.batch(
        {
            "c": ("crm.contact.add", {"fields": {"NAME": "Ann", "EMAIL": [{"VALUE": "ann@example.com"}]}}),
            "d": ("crm.deal.add", {"fields": {"TITLE": "Order 1", "CONTACT_ID": result_ref("c")}}),
            "read": ("crm.deal.get", {"id": result_ref("d")}),
            "missing": ("crm.deal.get", {"id": 999}),
            "invalid": ("crm.contact.add", {"fields": {"EMAIL": [{"VALUE": "not an e-mail"}]}}),
            "after": ("crm.contact.get", {"id": result_ref("c")}),
        }
    )

    contact_id, deal_id = outcome.results["c"], outcome.results["d"]
    assert outcome.results["read"]["CONTACT_ID"] == str(contact_id)
    assert outcome.results["read"]["ID"] == str(deal_id)
    assert outcome.results["after"]["EMAIL"][0]["VALUE"] == "ann@example.com"
    assert set(outcome.errors) == {"missing", "invalid"}
    missing = outcome.errors["missing"]
    assert (missing.code, missing.description, missing.kind) == ("", "Not found", ErrorKind.PERMANENT)  # code as sent
    assert (outcome.errors["invalid"].code, outcome.errors["invalid"].kind) == ("ERROR_CORE", ErrorKind.PERMANENT)
    assert outcome.errors["invalid"].http_status is None  # a command has no status of its own
    assert sandbox.stats()["by_method"] == {"batch": 1}


def test_halt_stops_at_the_first_failure(client, sandbox):
    outcome = client.batch(
        {
            "first": ("crm.deal.add", {"fields": {"TITLE": "one"}}),
            "broken": ("crm.deal.update", {"id": 999, "fields": {"TITLE": "x"}}),
            "never": ("crm.deal.add", {"fields": {"TITLE": "three"}}),
        },
        halt=True,
    )

    assert outcome.results == {"first": 1}
    assert outcome.errors["broken"].kind is ErrorKind.PERMANENT
    assert (outcome.errors["never"].code, outcome.errors["never"].kind) == ("NOT_EXECUTED", ErrorKind.RETRY)
    assert [deal["TITLE"] for deal in sandbox.records("deal")] == ["one"]


def test_fifty_commands_fit_and_fifty_one_do_not(client, sandbox):
    fifty = {f"k{i}": ("crm.deal.add", {"fields": {"TITLE": f"deal {i}"}}) for i in range(50)}

    assert len(client.batch(fifty).results) == 50
    with pytest.raises(ValueError, match="at most 50"):
        client.batch({**fifty, "one_more": ("profile", {})})

    raw = requests.post(sandbox.webhook_url + "batch", json={"cmd": {str(i): "profile" for i in range(51)}})
    assert raw.status_code == 400
    assert raw.json()["error"] == "ERROR_BATCH_LENGTH_EXCEEDED"


def test_batch_inside_batch_fails_the_request(client):
    with pytest.raises(BitrixError) as caught:
        client.batch({"inner": ("batch", {"cmd": {"a": "profile"}})})

    assert (caught.value.code, caught.value.http_status) == ("ERROR_BATCH_METHOD_NOT_ALLOWED", 405)
    assert caught.value.kind is ErrorKind.PERMANENT


def test_rate_limited_batch_fails_as_a_whole(client, sandbox):
    sandbox.set_faults(error_503_share=1.0)

    with pytest.raises(BitrixError) as caught:
        client.batch({"a": ("profile", {})})

    assert (caught.value.code, caught.value.kind) == ("QUERY_LIMIT_EXCEEDED", ErrorKind.RETRY)


def test_operation_time_limit_inside_a_batch(sandbox, limited_client, limiter):
    sandbox.set_faults(operation_limits={"crm.deal.add": 60})

    outcome = limited_client.batch(
        {
            "deal": ("crm.deal.add", {"fields": {"TITLE": "x"}}),
            "contact": ("crm.contact.add", {"fields": {"NAME": "y"}}),
        }
    )

    error = outcome.errors["deal"]
    assert (error.code, error.kind) == ("OPERATION_TIME_LIMIT", ErrorKind.RETRY)
    assert 50 < error.retry_after <= 60
    assert outcome.results == {"contact": 1}
    assert limiter.method_blocked_until("crm.deal.add") is not None


def test_text_survives_batch_exactly(client):
    commands = {
        f"c{i}": ("crm.contact.add", {"fields": {"NAME": name, "LAST_NAME": name, "COMMENTS": f"{name}\n{name}"}})
        for i, name in enumerate(NAMES)
    }
    added = client.batch(commands).results
    reads = client.batch({key: ("crm.contact.get", {"id": contact_id}) for key, contact_id in added.items()}).results

    for i, name in enumerate(NAMES):
        contact = reads[f"c{i}"]
        assert (contact["NAME"], contact["LAST_NAME"], contact["COMMENTS"]) == (name, name, f"{name}\n{name}")


def test_text_that_looks_like_a_reference_is_sent_alone_and_arrives_as_typed(client, sandbox):
    comment = "Customer wrote: use $result[d][ID] and $total[1] literally"

    outcome = client.batch(
        {
            "c": ("crm.contact.add", {"fields": {"NAME": "Ann"}}),
            "d": ("crm.deal.add", {"fields": {"COMMENTS": comment, "CONTACT_ID": result_ref("c")}}),
        }
    )

    deal = client.get("deal", outcome.results["d"])
    assert deal["COMMENTS"] == comment
    assert deal["CONTACT_ID"] == str(outcome.results["c"])  # the intended reference still resolved
    assert sandbox.stats()["by_method"] == {"batch": 1, "crm.deal.add": 1, "crm.deal.get": 1}


def test_a_command_referencing_one_sent_alone_follows_it(client):
    outcome = client.batch(
        {
            "c": ("crm.contact.add", {"fields": {"NAME": "Ann $result[c][ID]"}}),
            "d": ("crm.deal.add", {"fields": {"TITLE": "x", "CONTACT_ID": result_ref("c")}}),
            "other": ("crm.deal.add", {"fields": {"TITLE": "y"}}),
        }
    )

    assert client.get("contact", outcome.results["c"])["NAME"] == "Ann $result[c][ID]"
    assert client.get("deal", outcome.results["d"])["CONTACT_ID"] == str(outcome.results["c"])
    assert outcome.results["other"] == 1  # sent in the batch, before the others


def test_batch_maps_follow_php_json(sandbox):
    """Empty maps come as ``[]``, keys 0..n-1 as a list: the client reads both."""
    url = sandbox.webhook_url + "batch"

    listed = requests.post(url, json={"cmd": ["profile", "crm.deal.fields"]}).json()["result"]
    keyed = requests.post(url, json={"cmd": {"p": "profile"}}).json()["result"]

    assert isinstance(listed["result"], list) and len(listed["result"]) == 2
    assert keyed["result_error"] == [] and keyed["result_total"] == [] and keyed["result_next"] == []
    assert set(keyed["result_time"]["p"]) >= {"start", "finish", "duration", "date_start", "operating_reset_at"}


def test_list_results_in_batch_carry_totals(sandbox, client):
    client.batch({f"k{i}": ("crm.deal.add", {"fields": {"ORIGIN_ID": "order-1"}}) for i in range(3)})
    query = "crm.deal.list?filter[ORIGIN_ID]=order-1&select[]=ID"

    body = requests.post(sandbox.webhook_url + "batch", json={"cmd": {"l": query}}).json()["result"]

    assert [row["ID"] for row in body["result"]["l"]] == ["1", "2", "3"]
    assert body["result_total"] == {"l": 3}


def test_empty_batch_sends_nothing(client, sandbox):
    assert client.batch({}).results == {}
    assert sandbox.stats()["requests"] == 0


def test_bad_keys_are_refused(client):
    with pytest.raises(ValueError, match="batch keys"):
        client.batch({"a b": ("profile", {})})


def test_a_command_sent_alone_after_a_failure_with_halt_is_not_executed(client, sandbox, caplog):
    """Found by mutation testing: the halt rule holds for commands sent alone too, and only with halt."""
    commands = {
        "broken": ("crm.deal.update", {"id": 999, "fields": {"TITLE": "x"}}),
        "alone": ("crm.deal.add", {"fields": {"TITLE": "pay $result[x] now"}}),
    }

    halted = client.batch(commands, halt=True)
    assert (halted.errors["alone"].code, halted.errors["alone"].kind) == ("NOT_EXECUTED", ErrorKind.RETRY)
    assert halted.errors["alone"].description == "not executed: an earlier command failed and halt was set"
    assert halted.errors["alone"].method == "crm.deal.add"
    assert sandbox.records("deal") == []

    with caplog.at_level("DEBUG", logger="crmbridge.bitrix"):
        went_on = client.batch(commands)
    assert set(went_on.errors) == {"broken"} and went_on.results == {"alone": 1}
    assert "Sending batch command alone of crm.deal.add alone: its text contains a $result-like reference" in [
        r.getMessage() for r in caplog.records
    ]


def test_a_command_sent_alone_that_fails_reports_its_own_error(client):
    outcome = client.batch({"alone": ("crm.deal.update", {"id": 999, "fields": {"TITLE": "$result[x]"}})})

    assert outcome.results == {}
    assert (outcome.errors["alone"].description, outcome.errors["alone"].kind) == ("Not found", ErrorKind.PERMANENT)


def test_a_command_sent_alone_resolves_references_inside_its_lists(client):
    """Found by mutation testing: a reference inside a list (a multifield's item) of a command sent alone
    is resolved like one at the top, and the list keeps its other items."""
    outcome = client.batch(
        {
            "c": ("crm.contact.add", {"fields": {"NAME": "Ann", "EMAIL": [{"VALUE": "ann@example.com"}]}}),
            "g": ("crm.contact.get", {"id": result_ref("c")}),
            "twin": (
                "crm.contact.add",
                {
                    "fields": {
                        "NAME": "Ann's twin, see $result[c]",  # sent alone: Bitrix would rewrite this text
                        "EMAIL": [
                            {"VALUE": result_ref("g", "EMAIL", "0", "VALUE"), "VALUE_TYPE": "HOME"},
                            {"VALUE": "twin@example.com", "VALUE_TYPE": "WORK"},
                        ],
                    }
                },
            ),
        }
    )

    twin = client.get("contact", outcome.results["twin"])
    assert twin["NAME"] == "Ann's twin, see $result[c]"
    assert [(e["VALUE"], e["VALUE_TYPE"]) for e in twin["EMAIL"]] == [
        ("ann@example.com", "HOME"),
        ("twin@example.com", "WORK"),
    ]
