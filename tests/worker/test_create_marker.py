"""The create marker is committed before the ``add`` leaves: a crash in between is adopted, not repeated.

The sandbox is the witness: at the moment it receives ``crm.contact.add`` / ``crm.deal.add``
(its own handler thread, its own database connection), it reads the record's
``SyncRecord.create_started_at``. Only a marker already committed by the worker is seen.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from crmbridge.models import SyncRecord
from crmbridge.worker import write_back
from orders.models import Order
from tests.worker.helpers import run_worker_once

pytestmark = pytest.mark.django_db(transaction=True)


def watch_adds(sandbox, entity: str, seen: list[tuple[str, int, bool]]) -> None:
    """Wrap the sandbox's ``crm.<entity>.add``: note whether the record's marker exists on arrival."""
    method = f"crm.{entity}.add"
    handler = sandbox.portal.methods[method]

    def observed(params: dict, caller):
        local_id = int(str(params["fields"]["ORIGIN_ID"]).rsplit("-", 1)[1])
        try:
            marked = SyncRecord.objects.filter(
                entity=entity, local_id=local_id, create_started_at__isnull=False
            ).exists()
        finally:
            connection.close()  # this is the sandbox's request thread
        seen.append((entity, local_id, marked))
        return handler(params, caller)

    sandbox.portal.methods[method] = observed


def test_the_create_marker_is_committed_before_the_add_reaches_the_portal(sandbox, alice):
    orders = [Order.objects.create(owner=alice, service_id="welding", quantity=i + 1) for i in range(2)]
    seen: list[tuple[str, int, bool]] = []
    for entity in ("contact", "deal"):
        watch_adds(sandbox, entity, seen)

    assert run_worker_once() == 0

    expected = [("contact", alice.pk, True)] + [("deal", order.pk, True) for order in orders]
    assert sorted(seen) == sorted(expected)
    # Written back: the markers are cleared with the Bitrix IDs.
    assert not SyncRecord.objects.filter(create_started_at__isnull=False).exists()


def test_writing_an_adopted_id_clears_that_records_marker_only(alice):
    """Found by mutation testing: the marker cleared is the one of that entity and local ID."""
    order, other = (Order.objects.create(owner=alice, service_id="welding", quantity=n) for n in (1, 2))
    for entity, local_id in (("deal", order.pk), ("contact", order.pk), ("deal", other.pk)):
        SyncRecord.objects.update_or_create(
            entity=entity, local_id=local_id, defaults={"create_started_at": timezone.now()}
        )

    write_back.write_bitrix_id("deal", order.pk, 555)

    assert Order.objects.get(pk=order.pk).bitrix_deal_id == 555
    marked = SyncRecord.objects.filter(create_started_at__isnull=False).values_list("entity", "local_id")
    assert sorted(marked) == sorted([("contact", order.pk), ("deal", other.pk)])


def test_a_record_created_but_not_synced_keeps_its_id_and_waits_unmarked(alice):
    """Found by mutation testing: a deal saved without its contact gets its ID and loses its marker;
    it stays waiting (its contact is not there yet)."""
    order = Order.objects.create(owner=alice, service_id="welding", quantity=1)
    SyncRecord.objects.update_or_create(
        entity="deal", local_id=order.pk, defaults={"create_started_at": timezone.now()}
    )

    write_back.record_success(created=[("deal", order.pk, 77)], synced=[])

    assert Order.objects.get(pk=order.pk).bitrix_deal_id == 77
    record = SyncRecord.objects.get(entity="deal", local_id=order.pk)
    assert (record.state, record.create_started_at) == (SyncRecord.State.WAITING, None)


def test_a_contacts_marker_does_not_make_the_order_with_the_same_id_a_suspect(alice):
    order = Order.objects.create(owner=alice, service_id="welding", quantity=1)
    SyncRecord.objects.create(entity="contact", local_id=order.pk, create_started_at=timezone.now())

    assert write_back.create_markers("deal", [order.pk]) == set()
    assert write_back.create_markers("contact", [order.pk]) == {order.pk}


def test_orders_are_loaded_with_their_owners_in_one_query(alice, bob, django_assert_num_queries):
    orders = [Order.objects.create(owner=user, service_id="welding", quantity=1) for user in (alice, bob)]

    with django_assert_num_queries(1):
        loaded = write_back.load_records("deal", [o.pk for o in orders])
        assert {order.owner.username for order in loaded.values()} == {"alice", "bob"}
