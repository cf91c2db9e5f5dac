"""The client's record helpers against the sandbox, and the portal's answer formats."""

from __future__ import annotations

import requests

from crmbridge.bitrix.client import BitrixClient

TRICKY = "Сделка «Ёлка» & co = [1] 50% 😀 %41"


def test_deal_round_trip(client):
    deal_id = client.add("deal", {"TITLE": TRICKY, "OPPORTUNITY": "1500", "CURRENCY_ID": "EUR", "ORIGIN_ID": "order-1"})

    assert client.update("deal", deal_id, {"STAGE_ID": "WON", "COMMENTS": TRICKY}) is True
    deal = client.get("deal", deal_id)

    assert deal["ID"] == str(deal_id)  # every scalar is a string
    assert (deal["TITLE"], deal["COMMENTS"], deal["STAGE_ID"]) == (TRICKY, TRICKY, "WON")
    assert (deal["OPPORTUNITY"], deal["CURRENCY_ID"]) == ("1500.00", "EUR")


def test_contact_round_trip(client):
    contact_id = client.add(
        "contact", {"NAME": TRICKY, "PHONE": [{"VALUE": "+7 (495) 123-45-67", "VALUE_TYPE": "MOBILE"}]}
    )

    contact = client.get("contact", contact_id)

    assert contact["NAME"] == TRICKY
    assert contact["PHONE"] == [
        {"ID": contact["PHONE"][0]["ID"], "VALUE_TYPE": "MOBILE", "VALUE": "+7 (495) 123-45-67", "TYPE_ID": "PHONE"}
    ]
    assert "EMAIL" not in contact and contact["HAS_EMAIL"] == "N"


def test_find_by_origin_returns_the_oldest_of_ours(sandbox):
    client = BitrixClient(sandbox.webhook_url, originator_id="shop")
    client.add("deal", {"ORIGIN_ID": "order-7", "ORIGINATOR_ID": "another-app"})
    first = client.add("deal", {"ORIGIN_ID": "order-7", "ORIGINATOR_ID": "shop"})
    client.add("deal", {"ORIGIN_ID": "order-7", "ORIGINATOR_ID": "shop"})
    client.add("contact", {"ORIGIN_ID": "user-7", "ORIGINATOR_ID": "shop"})

    assert client.find_by_origin("deal", "order-7") == first
    assert client.find_by_origin("deal", "order-8") is None
    assert client.find_by_origin("contact", "user-7") == 1
    assert sandbox.stats()["duplicates"]["deal"] == {"order-7": 3}


def test_list_pages_by_fifty(client, sandbox):
    for start in range(0, 120, 50):
        client.batch(
            {f"k{i}": ("crm.deal.add", {"fields": {"TITLE": f"d{i}"}}) for i in range(start, min(start + 50, 120))}
        )

    url = sandbox.webhook_url + "crm.deal.list"
    first = requests.post(url, json={"select": ["ID", "TITLE"]}).json()
    last = requests.post(url, json={"start": 100, "order": {"ID": "DESC"}}).json()
    filtered = client.call("crm.deal.list", {"filter": {">=ID": 118, "<ID": 120, "%TITLE": "D11"}, "select": ["ID"]})

    assert (len(first["result"]), first["total"], first["next"]) == (50, 120, 50)
    assert set(first["result"][0]) == {"ID", "TITLE"}
    assert (len(last["result"]), last["total"], "next" in last) == (20, 120, False)
    assert last["result"][0]["ID"] == "20"
    assert filtered == [{"ID": "118"}, {"ID": "119"}]


def test_get_form_and_multipart_requests_are_understood(sandbox):
    base = sandbox.webhook_url

    added = requests.get(base + "crm.deal.add.json", params={"FIELDS[TITLE]": "via GET & query"}).json()
    form = requests.post(base + "crm.deal.update", data={"ID": added["result"], "fields[COMMENTS]": "form = ok"})
    multipart = requests.post(base + "crm.deal.get", files={"id": (None, str(added["result"]))})

    assert added["result"] == 1 and set(added["time"]) >= {"start", "finish", "duration", "date_start"}
    assert form.json()["result"] is True
    deal = multipart.json()["result"]
    assert (deal["TITLE"], deal["COMMENTS"]) == ("via GET & query", "form = ok")
