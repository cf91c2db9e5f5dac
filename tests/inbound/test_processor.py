"""``InboundBatch`` step by step: waiting for local changes and locks, batching, contacts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from accounts.models import User
from crmbridge.bitrix.client import BitrixClient
from crmbridge.inbound.events import InboundEvent
from crmbridge.inbound.processor import InboundBatch
from crmbridge.models import SyncRecord
from crmbridge.redis_io import streams
from crmbridge.worker.record_locks import RecordLocks
from crmbridge.worker.stream_consumer import StreamMessage
from orders.models import Order
from tests.inbound.helpers import deal_in, linked_order, post_event, status_of
from tests.worker.helpers import run_worker_once

pytestmark = [pytest.mark.urls("tests.inbound.urls"), pytest.mark.django_db(transaction=True)]


def message(event: str, bitrix_id: int, entry_id: str = "1-0") -> StreamMessage:
    fields = InboundEvent(event, bitrix_id, ts=datetime.now(UTC)).to_fields()
    return StreamMessage(streams.webhooks_stream(), entry_id, fields)


def inbound_batch(redis_client, owner: str = "test-worker") -> InboundBatch:
    locks = RecordLocks(redis_client, owner=owner, lease_ms=5000)
    return InboundBatch(BitrixClient.from_settings(), locks, consumer=owner)


def test_a_local_change_not_yet_in_bitrix_makes_the_event_wait(sandbox, alice, redis_client):
    order = linked_order(alice)  # the deal is at NEW
    staff_copy = Order.objects.get(pk=order.pk)
    staff_copy.status = "shipped"
    staff_copy.save()  # queued for Bitrix, not sent yet
    event = message("ONCRMDEALUPDATE", order.bitrix_deal_id)

    outcome = inbound_batch(redis_client).process([event])

    assert outcome.deferred == [event] and not outcome.done
    assert status_of(order) == "shipped"  # the deal's NEW did not undo the staff's change

    run_worker_once()  # the update reaches Bitrix ...
    outcome = inbound_batch(redis_client).process([event])  # ... then the event applies, changing nothing

    assert outcome.done == [event]
    assert status_of(order) == "shipped"
    assert deal_in(sandbox, order.bitrix_deal_id)["STAGE_ID"] == "FINAL_INVOICE"


def test_a_record_another_worker_holds_makes_the_event_wait(sandbox, alice, redis_client):
    order = linked_order(alice)
    RecordLocks(redis_client, owner="other-worker", lease_ms=5000).acquire([("deal", order.pk)])
    event = message("ONCRMDEALUPDATE", order.bitrix_deal_id)

    outcome = inbound_batch(redis_client).process([event])

    assert outcome.deferred == [event]


def test_many_events_cost_one_batch_request(sandbox, alice, bob, redis_client):
    orders = [linked_order(alice), linked_order(bob), linked_order(alice)]
    before = sandbox.stats()["by_method"].get("batch", 0)
    events = [message("ONCRMDEALUPDATE", o.bitrix_deal_id, f"{i}-0") for i, o in enumerate(orders * 2, start=1)]

    outcome = inbound_batch(redis_client).process(events)

    assert sorted(m.id for m in outcome.done) == sorted(m.id for m in events)
    assert sandbox.stats()["by_method"].get("batch", 0) - before == 1


@pytest.fixture
def alice_contact(sandbox, alice, settings):
    """Alice with her contact in the sandbox, changed there by a manager."""
    linked_order(alice)
    contact_id = User.objects.get(pk=alice.pk).bitrix_contact_id
    fields = {"NAME": "Алиса", "LAST_NAME": "Иванова", "PHONE": [{"VALUE": "+7 (495) 123-45-67", "VALUE_TYPE": "WORK"}]}
    BitrixClient(settings.BITRIX_WEBHOOK_URL).update("contact", contact_id, fields)
    return contact_id


def test_contact_events_change_nothing_by_default(alice, alice_contact, redis_client):
    event = message("ONCRMCONTACTUPDATE", alice_contact)

    assert inbound_batch(redis_client).process([event]).done == [event]

    assert User.objects.get(pk=alice.pk).first_name == "Alice"


def test_contact_updates_when_configured_copy_name_and_phone_without_queuing(
    alice, alice_contact, client, settings, operation_entries
):
    settings.BITRIX_INBOUND_CONTACT_UPDATES = True
    operations_before = len(operation_entries())

    post_event(client, "ONCRMCONTACTUPDATE", alice_contact, datetime.now(UTC))
    run_worker_once()

    user = User.objects.get(pk=alice.pk)
    assert (user.first_name, user.last_name, user.phone) == ("Алиса", "Иванова", "+7 (495) 123-45-67")
    assert user.email == "alice@example.com"
    assert len(operation_entries()) == operations_before


def test_a_contact_deleted_in_bitrix_unlinks_the_user_when_configured(alice, alice_contact, settings, redis_client):
    settings.BITRIX_INBOUND_CONTACT_UPDATES = True
    BitrixClient(settings.BITRIX_WEBHOOK_URL).call("crm.contact.delete", {"id": alice_contact})

    outcome = inbound_batch(redis_client).process([message("ONCRMCONTACTDELETE", alice_contact)])

    assert len(outcome.done) == 1
    assert User.objects.get(pk=alice.pk).bitrix_contact_id is None
    assert "deleted in Bitrix" in SyncRecord.objects.get(entity="contact", local_id=alice.pk).last_error
