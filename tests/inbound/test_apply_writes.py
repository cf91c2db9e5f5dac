"""``apply_deal``, ``unlink`` and ``note_remote_change`` directly: which rows an applied event writes.

Found by mutation testing (docs/mutation.md): every write must hit the order named AND still
linked to the deal of the event (two orders may share a deal ID: a duplicate, an old record),
a deal without a stage must say so, a sync record the event creates must say "synced", and the
local state read under the lock is the order's own (a user's sync record of the same ID is not).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from django.utils import timezone

from crmbridge.inbound.apply import LocalState, apply_deal, local_states, unlink
from crmbridge.models import SyncRecord
from orders.models import Order

pytestmark = pytest.mark.django_db

CHANGED_AT = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)


@pytest.fixture
def order_linked_to(alice, redis_client):
    """A function: an order linked to a deal ID without the worker, and without a sync record."""

    def make(deal_id: int) -> Order:
        order = Order.objects.create(owner=alice, service_id="cnc-milling", quantity=1)
        Order.objects.filter(pk=order.pk).update(bitrix_deal_id=deal_id)
        SyncRecord.objects.filter(entity="deal", local_id=order.pk).delete()
        return order

    return make


def row(order: Order) -> tuple[str, int | None]:
    return Order.objects.values_list("status", "bitrix_deal_id").get(pk=order.pk)


def test_an_applied_deal_creates_a_synced_sync_record_with_the_events_time(order_linked_to):
    order = order_linked_to(7)

    apply_deal(order.pk, 7, {"STAGE_ID": "FINAL_INVOICE"}, CHANGED_AT)

    sync = SyncRecord.objects.get(entity="deal", local_id=order.pk)
    assert (sync.state, sync.remote_changed_at) == (SyncRecord.State.SYNCED, CHANGED_AT)


def test_a_deal_without_a_stage_is_an_unknown_empty_stage(order_linked_to, caplog):
    order = order_linked_to(7)

    with caplog.at_level(logging.WARNING, logger="crmbridge.inbound"):
        assert apply_deal(order.pk, 7, {}, None) == "unknown stage '', status unchanged"

    assert [r.getMessage() for r in caplog.records] == [
        f"[WEBHOOK] Deal 7 is at stage '', which BITRIX_STAGE_MAP does not map to an order status; "
        f"order {order.pk} keeps its status"
    ]


def test_a_stage_is_applied_to_the_order_named_only(order_linked_to):
    order, duplicate = order_linked_to(7), order_linked_to(7)

    apply_deal(order.pk, 7, {"STAGE_ID": "FINAL_INVOICE"}, None)

    assert (row(order), row(duplicate)) == (("shipped", 7), ("new", 7))


def test_a_stage_is_not_applied_to_an_order_relinked_to_another_deal(order_linked_to):
    order = order_linked_to(8)

    apply_deal(order.pk, 7, {"STAGE_ID": "FINAL_INVOICE"}, None)

    assert row(order) == ("new", 8)


def test_a_deleted_deal_unlinks_the_order_named_only(order_linked_to):
    order, duplicate = order_linked_to(7), order_linked_to(7)

    assert unlink("deal", order.pk, 7, CHANGED_AT) is True

    assert (row(order), row(duplicate)) == (("new", None), ("new", 7))


def test_a_deleted_deal_leaves_an_order_relinked_to_another_deal_alone(order_linked_to):
    order = order_linked_to(8)

    assert unlink("deal", order.pk, 7, CHANGED_AT) is False

    assert row(order) == ("new", 8)
    assert not SyncRecord.objects.filter(entity="deal", local_id=order.pk).exists()


def test_the_local_state_is_each_orders_own_deal_sync_record(order_linked_to):
    never_synced, synced = order_linked_to(7), order_linked_to(8)
    SyncRecord.objects.create(entity="deal", local_id=synced.pk, state=SyncRecord.State.SYNCED)
    for order in (never_synced, synced):  # users with the same IDs, their changes just queued
        SyncRecord.objects.update_or_create(
            entity="contact", local_id=order.pk, defaults={"state": "waiting", "last_queued_at": timezone.now()}
        )

    assert local_states("deal", [never_synced.pk, synced.pk]) == {
        never_synced.pk: LocalState(local_id=never_synced.pk, bitrix_id=7),
        synced.pk: LocalState(local_id=synced.pk, bitrix_id=8, sync_state="synced"),
    }
