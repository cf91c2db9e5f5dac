"""Orders and users reach the sandbox as deals and contacts, exactly once."""

from __future__ import annotations

import logging

import pytest
from django.utils import timezone

from accounts.models import User
from crmbridge.bitrix.client import BitrixClient
from crmbridge.models import SyncRecord
from crmbridge.redis_io import streams
from orders.models import Order
from tests.worker.helpers import run_worker_once

pytestmark = pytest.mark.django_db(transaction=True)

TRICKY = "Заказ № 5 & co = [100%] 🎉"


def create_order(client, **fields) -> int:
    body = {"service_id": "cnc-milling", "quantity": 3, **fields}
    response = client.post("/orders", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def one(records: list[dict], **match) -> dict:
    found = [r for r in records if all(str(r.get(k)) == str(v) for k, v in match.items())]
    assert len(found) == 1, (match, records)
    return found[0]


def test_order_and_user_become_deal_and_contact(sandbox, alice, alice_client, admin_client_api):
    order_id = create_order(alice_client, comment=TRICKY, material="Сталь 45")
    priced = admin_client_api.patch(f"/orders/{order_id}", {"amount": "1500.00"}, format="json")  # staff price it
    assert priced.status_code == 200, priced.content

    assert run_worker_once() == 0

    order = Order.objects.select_related("owner").get(pk=order_id)
    contact = one(sandbox.records("contact"), ORIGIN_ID=f"user-{alice.pk}")
    deal = one(sandbox.records("deal"), ORIGIN_ID=f"order-{order_id}")
    assert order.bitrix_deal_id == int(deal["ID"])
    assert order.owner.bitrix_contact_id == int(contact["ID"])
    assert str(deal["CONTACT_ID"]) == str(contact["ID"])
    assert deal["ORIGINATOR_ID"] == "bitrixsync"
    assert float(deal["OPPORTUNITY"]) == 1500.0
    assert deal["CURRENCY_ID"] == "RUB"
    assert deal["STAGE_ID"] == "NEW"
    assert TRICKY in deal["COMMENTS"] and "Сталь 45" in deal["COMMENTS"]
    assert contact["NAME"] == "Alice"
    assert [e["VALUE"] for e in contact["EMAIL"]] == ["alice@example.com"]
    record = SyncRecord.objects.get(entity="deal", local_id=order_id)
    assert record.state == SyncRecord.State.SYNCED and record.last_synced_at is not None  # the admin's column
    assert not sandbox.stats()["duplicates"]["deal"]
    assert not sandbox.stats()["duplicates"]["contact"]


def test_updates_reach_bitrix_and_replace_the_email(sandbox, alice, alice_client):
    order_id = create_order(alice_client)
    run_worker_once()

    assert alice_client.put(f"/orders/{order_id}", {"quantity": 5}, format="json").status_code == 200
    assert alice_client.put("/profile", {"email": "newemail@example.com"}, format="json").status_code == 200
    run_worker_once()

    deal = one(sandbox.records("deal"), ORIGIN_ID=f"order-{order_id}")
    contact = one(sandbox.records("contact"), ORIGIN_ID=f"user-{alice.pk}")
    assert "5" in deal["TITLE"]
    assert [e["VALUE"] for e in contact["EMAIL"]] == ["newemail@example.com"]
    assert len(sandbox.records("deal")) == 1 and len(sandbox.records("contact")) == 1


def test_spec_log_lines(sandbox, alice, alice_client, caplog):
    caplog.set_level(logging.INFO)
    order_id = create_order(alice_client)
    run_worker_once()

    deal_id = Order.objects.get(pk=order_id).bitrix_deal_id
    text = caplog.text
    assert "Starting Bitrix worker - entering process_messages()" in text
    assert "Worker loop iteration 1 - running=True" in text
    assert f"[WORKER] Processing create operation for deal {order_id} (retry: 0, message_id: " in text
    assert f"Created Bitrix deal {deal_id} for order {order_id}" in text
    assert f"Updated order {order_id} with Bitrix deal ID {deal_id}" in text
    assert f"Created Bitrix contact {User.objects.get(pk=alice.pk).bitrix_contact_id} for user {alice.pk}" in text


def test_messages_for_one_record_are_coalesced(sandbox, alice, alice_client, redis_client):
    order_id = create_order(alice_client)
    run_worker_once()
    calls_before = sandbox.stats()["by_method"].copy()
    for quantity in (5, 6, 7):
        alice_client.patch(f"/orders/{order_id}", {"quantity": quantity}, format="json")

    run_worker_once()

    stats = sandbox.stats()["by_method"]
    # One request for three messages, after the new worker's start-up check of the portal (one batch).
    assert stats.get("batch", 0) - calls_before.get("batch", 0) == 2
    assert "7" in one(sandbox.records("deal"), ORIGIN_ID=f"order-{order_id}")["TITLE"]
    assert redis_client.xpending(streams.operations_stream(), streams.GROUP)["pending"] == 0


def test_interrupted_create_is_adopted_not_duplicated(sandbox, alice, settings, caplog):
    """A crash after Bitrix created the deal but before the ID was written back."""
    caplog.set_level(logging.INFO)
    order = Order.objects.create(owner=alice, service_id="3d-printing", quantity=1)
    existing = BitrixClient(settings.BITRIX_WEBHOOK_URL).add(
        "deal", {"TITLE": "earlier", "ORIGIN_ID": f"order-{order.pk}", "ORIGINATOR_ID": "bitrixsync"}
    )
    SyncRecord.objects.filter(entity="deal", local_id=order.pk).update(create_started_at=timezone.now())

    run_worker_once()

    order.refresh_from_db()
    assert order.bitrix_deal_id == existing
    assert len([d for d in sandbox.records("deal") if d["ORIGIN_ID"] == f"order-{order.pk}"]) == 1
    assert one(sandbox.records("deal"), ID=existing)["TITLE"] != "earlier"  # then updated to the current state
    found = f"Found existing Bitrix deal {existing} for order {order.pk} (ORIGIN_ID match); not creating another"
    assert found in caplog.messages
    assert f"Updated Bitrix deal {existing} for order {order.pk}" in caplog.messages


def test_a_failed_origin_lookup_holds_the_create_back(sandbox, alice, settings, redis_client):
    """The lookup of a record whose earlier add may have reached Bitrix failed: no add (it could duplicate)."""
    order = Order.objects.create(owner=alice, service_id="3d-printing", quantity=1)
    BitrixClient(settings.BITRIX_WEBHOOK_URL).add(
        "deal", {"TITLE": "earlier", "ORIGIN_ID": f"order-{order.pk}", "ORIGINATOR_ID": "bitrixsync"}
    )
    SyncRecord.objects.filter(entity="deal", local_id=order.pk).update(create_started_at=timezone.now())
    sandbox.set_faults(operation_limits={"crm.deal.list": 60})

    run_worker_once(max_retries=0)

    assert len([d for d in sandbox.records("deal") if d["ORIGIN_ID"] == f"order-{order.pk}"]) == 1
    [(_, letter)] = redis_client.xrange(streams.dead_letter_stream())
    assert (letter["reason"], letter["error_code"]) == ("max_retries_exceeded", "OPERATION_TIME_LIMIT")


def test_adds_and_updates_ask_the_portal_not_to_post_to_the_live_feed(sandbox, alice, alice_client, monkeypatch):
    """``REGISTER_SONET_EVENT=N`` on every write: a backlog must not flood the portal's activity stream."""
    received: list[tuple[str, object]] = []
    for method in ("crm.contact.add", "crm.deal.add", "crm.deal.update"):
        handler = sandbox.portal.methods[method]
        monkeypatch.setitem(sandbox.portal.methods, method, record_params(method, handler, received))
    order_id = create_order(alice_client)
    run_worker_once()
    alice_client.patch(f"/orders/{order_id}", {"quantity": 5}, format="json")
    run_worker_once()

    assert sorted(m for m, _ in received) == ["crm.contact.add", "crm.deal.add", "crm.deal.update"]
    assert all(params == {"REGISTER_SONET_EVENT": "N"} for _, params in received), received


def record_params(method: str, handler, received: list):
    def recorded(params: dict, caller):
        received.append((method, params.get("params")))
        return handler(params, caller)

    return recorded


def test_write_back_queues_nothing(sandbox, alice, alice_client, redis_client):
    create_order(alice_client)
    run_worker_once()
    length = redis_client.xlen(streams.operations_stream())

    run_worker_once()

    assert redis_client.xlen(streams.operations_stream()) == length


def test_an_adopted_contact_is_updated_in_place_and_linked_to_the_deal(sandbox, alice, settings):
    """The contact's add reached Bitrix before a crash; its order comes in the same chunk."""
    client = BitrixClient(settings.BITRIX_WEBHOOK_URL)
    earlier = client.add(
        "contact",
        {
            "NAME": "Old",
            "ORIGIN_ID": f"user-{alice.pk}",
            "ORIGINATOR_ID": "bitrixsync",
            "EMAIL": [{"VALUE": "old@example.com", "VALUE_TYPE": "WORK"}],
        },
    )
    User.objects.filter(pk=alice.pk).update(bitrix_contact_id=None)
    SyncRecord.objects.update_or_create(
        entity="contact", local_id=alice.pk, defaults={"create_started_at": timezone.now()}
    )
    order = Order.objects.create(owner=alice, service_id="cnc-milling", quantity=1)

    run_worker_once()

    contact = one(sandbox.records("contact"), ORIGIN_ID=f"user-{alice.pk}")
    assert int(contact["ID"]) == earlier
    assert [e["VALUE"] for e in contact["EMAIL"]] == ["alice@example.com"]  # replaced, not appended
    assert str(one(sandbox.records("deal"), ORIGIN_ID=f"order-{order.pk}")["CONTACT_ID"]) == str(earlier)
    assert User.objects.get(pk=alice.pk).bitrix_contact_id == earlier
