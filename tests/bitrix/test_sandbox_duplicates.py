"""The sandbox finds existing contacts and keeps multi-value fields as the portal does.

Each test cites bitrix24-rest-facts.md, section "CRM depth" (or "batch").
"""

from __future__ import annotations

import pytest
import requests

from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.errors import BitrixError


def find(sandbox, **params) -> requests.Response:
    return requests.post(sandbox.webhook_url + "crm.duplicate.findbycomm", json=params)


def contact(client, *, emails=(), phones=(), **fields) -> int:
    fields["EMAIL"] = [{"VALUE": e, "VALUE_TYPE": "WORK"} for e in emails]
    fields["PHONE"] = [{"VALUE": p, "VALUE_TYPE": "WORK"} for p in phones]
    return client.add("contact", fields)


def test_findbycomm_answers_the_matching_contact_ids_by_type(sandbox, client):
    """bitrix24-rest-facts.md, CRM depth: result ``{"CONTACT": [275, 2297]}``; e-mail in any letter case."""
    first = contact(client, emails=["Ann@Example.com"])
    second = contact(client, emails=["other@example.com", "ann@example.COM"])
    contact(client, emails=["bob@example.com"])

    answer = find(sandbox, type="EMAIL", values=["ANN@example.com"], entity_type="CONTACT")

    assert answer.status_code == 200
    assert answer.json()["result"] == {"CONTACT": [first, second]}


def test_findbycomm_answers_an_empty_array_when_nothing_matches(sandbox, client):
    """bitrix24-rest-facts.md, CRM depth: "when nothing matches at all expect ``[]``" (an empty PHP array)."""
    contact(client, emails=["ann@example.com"])

    for entity_type in ("CONTACT", None):
        params = {"type": "EMAIL", "values": ["nobody@example.com"]}
        if entity_type:
            params["entity_type"] = entity_type
        assert find(sandbox, **params).json()["result"] == []


def test_findbycomm_without_type_or_values_is_a_400(sandbox):
    """bitrix24-rest-facts.md, CRM depth: HTTP 400 "Communication type is not defined" / "... values ..."."""
    no_type = find(sandbox, values=["a@example.com"])
    no_values = find(sandbox, type="EMAIL")

    assert no_type.status_code == 400
    assert no_type.json()["error_description"].startswith("Communication type is not defined")
    assert no_values.status_code == 400
    assert no_values.json()["error_description"].startswith("Communication values is not defined")


def test_phone_matching_ignores_formatting_and_the_extension(sandbox, client):
    """bitrix24-rest-facts.md, CRM depth: "``+7812...#4048`` finds ``+7812...``"."""
    office = contact(client, phones=["+7 (812) 555-01-02"])

    answer = find(sandbox, type="PHONE", values=["+78125550102#4048"], entity_type="CONTACT")

    assert answer.json()["result"] == {"CONTACT": [office]}


def test_twenty_or_more_matches_of_one_type_leave_the_others_out(sandbox, client):
    """bitrix24-rest-facts.md, CRM depth: "If one type has 20 or more matches the others are omitted".

    The sandbox keeps contacts only (leads and companies never match), so what
    is observable is that all the matches come back, under ``CONTACT`` alone.
    """
    ids = [contact(client, emails=["shared@example.com"]) for _ in range(21)]

    answer = find(sandbox, type="EMAIL", values=["shared@example.com"])

    assert answer.json()["result"] == {"CONTACT": ids}


def test_findbycomm_runs_inside_a_batch_with_an_encoded_query(sandbox, client):
    """bitrix24-rest-facts.md, CRM depth: "It can run inside ``batch``" (values as a PHP array)."""
    ann = contact(client, emails=["ann@example.com"])
    outcome = client.batch(
        {
            "e": ("crm.duplicate.findbycomm", {"type": "EMAIL", "values": ["x@example.com", "ann@example.com"]}),
            "n": ("crm.duplicate.findbycomm", {"type": "EMAIL", "values": ["none@example.com"]}),
            "bad": ("crm.duplicate.findbycomm", {"values": ["ann@example.com"]}),
        }
    )

    assert outcome.results["e"] == {"CONTACT": [ann]}
    assert outcome.results["n"] == []
    assert "Communication type is not defined" in str(outcome.errors["bad"])


def test_multifield_items_without_id_are_added_with_id_overwritten_or_deleted(sandbox, client):
    """bitrix24-rest-facts.md, CRM depth, "Multi-value fields": without ``ID`` added, with ``ID`` overwritten,
    ``{ID, DELETE: "Y"}`` or ``{ID, VALUE: ""}`` deleted."""
    contact_id = contact(client, emails=["a@example.com", "b@example.com"], phones=["+100", "+200"])
    before = client.get("contact", contact_id)
    (a, b), (p1, p2) = before["EMAIL"], before["PHONE"]

    client.update("contact", contact_id, {"EMAIL": [{"VALUE": "c@example.com"}]})
    assert [e["VALUE"] for e in client.get("contact", contact_id)["EMAIL"]] == [
        "a@example.com", "b@example.com", "c@example.com",
    ]  # fmt: skip

    client.update("contact", contact_id, {"EMAIL": [{"ID": a["ID"], "VALUE": "a2@example.com"}]})
    client.update("contact", contact_id, {"EMAIL": [{"ID": b["ID"], "DELETE": "Y"}]})
    client.update("contact", contact_id, {"PHONE": [{"ID": p1["ID"], "VALUE": ""}]})

    after = client.get("contact", contact_id)
    assert [(e["ID"], e["VALUE"]) for e in after["EMAIL"]][:1] == [(a["ID"], "a2@example.com")]
    assert [e["VALUE"] for e in after["EMAIL"]] == ["a2@example.com", "c@example.com"]
    assert [(p["ID"], p["VALUE"]) for p in after["PHONE"]] == [(p2["ID"], "+200")]


def test_findbycomm_follows_changed_and_deleted_communications(sandbox, client):
    """The sandbox's index of e-mails and phones (``RecordStore.contacts_with``) follows every write:
    a replaced e-mail is found by its new value only, a deleted phone no more, a deleted contact never."""
    kept = contact(client, emails=["old@example.com"], phones=["+7 900 000-00-01"])
    gone = contact(client, emails=["gone@example.com"])
    before = client.get("contact", kept)

    client.update("contact", kept, {"EMAIL": [{"ID": before["EMAIL"][0]["ID"], "VALUE": "new@example.com"}]})
    client.update("contact", kept, {"PHONE": [{"ID": before["PHONE"][0]["ID"], "DELETE": "Y"}]})
    assert requests.post(sandbox.webhook_url + "crm.contact.delete", json={"id": gone}).json()["result"] is True

    def found(kind: str, value: str):
        return find(sandbox, type=kind, values=[value], entity_type="CONTACT").json()["result"]

    assert found("EMAIL", "NEW@example.com") == {"CONTACT": [kept]}
    assert found("EMAIL", "old@example.com") == []
    assert found("PHONE", "79000000001") == []
    assert found("EMAIL", "gone@example.com") == []


def test_findbycomm_finds_the_contacts_of_a_restarted_sandbox(tmp_path):
    """With a database file, a restarted sandbox answers lookups for the contacts it had."""
    from devtools.sandbox.server import SandboxServer

    first = SandboxServer(port=0, db_path=str(tmp_path / "sandbox.sqlite3")).start()
    try:
        contact_id = BitrixClient(first.webhook_url, read_timeout=5).add("contact", {"EMAIL": [{"VALUE": "k@x.com"}]})
    finally:
        first.stop()
    second = SandboxServer(port=0, db_path=str(tmp_path / "sandbox.sqlite3")).start()
    try:
        assert find(second, type="EMAIL", values=["k@x.com"]).json()["result"] == {"CONTACT": [contact_id]}
    finally:
        second.stop()


def test_batch_references_are_resolved_after_the_query_is_decoded(sandbox, client):
    """bitrix24-rest-facts.md, batch: ``$result[key][field]`` lets a later command use an earlier result;
    the reference is read after the command's query string is decoded, so ``%24result%5Bc1%5D`` works too."""
    body = {
        "halt": 0,
        "cmd": {
            "c1": "crm.contact.add?fields%5BNAME%5D=Ann",
            "d1": "crm.deal.add?fields%5BTITLE%5D=x&fields%5BCONTACT_ID%5D=%24result%5Bc1%5D",
            "d2": "crm.deal.add?fields[TITLE]=y&fields[CONTACT_ID]=$result[c1]",
            "g1": "crm.contact.get?id=%24result%5Bc1%5D",
        },
    }

    answer = requests.post(sandbox.webhook_url + "batch", json=body).json()["result"]

    contact_id = answer["result"]["c1"]
    assert answer["result_error"] == []
    assert client.get("deal", answer["result"]["d1"])["CONTACT_ID"] == str(contact_id)
    assert client.get("deal", answer["result"]["d2"])["CONTACT_ID"] == str(contact_id)
    assert answer["result"]["g1"]["NAME"] == "Ann"


def test_a_denied_method_answers_403_insufficient_scope(sandbox, client):
    """bitrix24-rest-facts.md, CRM depth, "More error codes": 403 ``insufficient_scope`` (no rights)."""
    sandbox.set_faults(denied_methods=["crm.duplicate.findbycomm"])

    with pytest.raises(BitrixError) as caught:
        client.call("crm.duplicate.findbycomm", {"type": "EMAIL", "values": ["a@example.com"]})

    assert (caught.value.code, caught.value.http_status) == ("insufficient_scope", 403)
