"""From the portal to the order: sandbox -> endpoint (live server) -> webhooks stream -> worker -> order.

Everything is real: the sandbox over HTTP calls our endpoint on pytest-django's
live server, the endpoint queues to the private Redis, and a worker runs in
this process. Changes that come from Bitrix must never queue anything back.
"""

from __future__ import annotations

import io
import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from crmbridge.bitrix.client import BitrixClient
from crmbridge.models import OutboxEntry, SyncRecord
from crmbridge.redis_io import streams
from orders.models import Order
from tests.inbound.conftest import TOKEN
from tests.inbound.helpers import (
    control,
    deal_in,
    linked_order,
    move_stage,
    post_event,
    silently_set_stage,
    status_of,
    wait_for_entries,
)
from tests.worker.helpers import run_worker_once

pytestmark = [pytest.mark.urls("tests.inbound.urls"), pytest.mark.django_db(transaction=True)]


def test_a_stage_change_in_bitrix_reaches_the_order_and_queues_nothing_back(
    sandbox, alice, webhook_entries, operation_entries, redis_client
):
    order = linked_order(alice)
    operations_before = len(operation_entries())
    outbox_before = list(OutboxEntry.objects.values_list("pk", flat=True))  # sent rows may wait for a later delete

    move_stage(sandbox, order.bitrix_deal_id, "WON")
    (entry,) = wait_for_entries(webhook_entries, 1)
    assert entry["event"] == "ONCRMDEALUPDATE" and entry["bitrix_id"] == str(order.bitrix_deal_id)
    assert run_worker_once() == 0

    assert status_of(order) == "done"
    assert SyncRecord.objects.get(entity="deal", local_id=order.pk).remote_changed_at is not None
    # No ping-pong: nothing was queued for Bitrix, nothing sits in the outbox, the deal is as the manager left it.
    assert len(operation_entries()) == operations_before
    assert not OutboxEntry.objects.exclude(pk__in=outbox_before).exists()
    assert deal_in(sandbox, order.bitrix_deal_id)["STAGE_ID"] == "WON"
    assert redis_client.xpending(streams.webhooks_stream(), streams.GROUP)["pending"] == 0


def test_a_staff_change_after_an_inbound_one_still_goes_to_bitrix(sandbox, alice, webhook_entries, operation_entries):
    order = linked_order(alice)
    move_stage(sandbox, order.bitrix_deal_id, "EXECUTING")
    wait_for_entries(webhook_entries, 1)
    run_worker_once()
    assert status_of(order) == "in_production"

    staff_copy = Order.objects.get(pk=order.pk)
    staff_copy.status = "shipped"
    staff_copy.save()
    assert operation_entries()[-1]["op"] == "update"
    run_worker_once()

    assert deal_in(sandbox, order.bitrix_deal_id)["STAGE_ID"] == "FINAL_INVOICE"


def test_several_stage_changes_leave_the_last_stage(sandbox, alice, webhook_entries):
    order = linked_order(alice)
    for stage in ("PREPARATION", "EXECUTING", "LOSE", "WON"):
        move_stage(sandbox, order.bitrix_deal_id, stage)
    wait_for_entries(webhook_entries, 4)

    run_worker_once()

    assert status_of(order) == "done"


def test_repeated_and_out_of_order_events_leave_the_right_status(sandbox, alice, client, webhook_entries):
    order = linked_order(alice)
    deal_id = order.bitrix_deal_id
    t0 = datetime.now(UTC).replace(microsecond=0)

    silently_set_stage(deal_id, "WON")
    post_event(client, "ONCRMDEALUPDATE", deal_id, t0)
    post_event(client, "ONCRMDEALUPDATE", deal_id, t0)  # the same event twice
    run_worker_once()
    assert status_of(order) == "done"

    # The deal moves on, but a late event from before t0 arrives first: it changes nothing.
    silently_set_stage(deal_id, "LOSE")
    post_event(client, "ONCRMDEALUPDATE", deal_id, t0 - timedelta(minutes=5))
    run_worker_once()
    assert status_of(order) == "done"

    # The event of the move itself then arrives: the current deal is applied.
    post_event(client, "ONCRMDEALUPDATE", deal_id, t0 + timedelta(seconds=5))
    run_worker_once()
    assert status_of(order) == "cancelled"
    applied = SyncRecord.objects.get(entity="deal", local_id=order.pk).remote_changed_at
    assert applied == t0 + timedelta(seconds=5)

    # Repeated again, late: still the current state, and the applied time never goes back.
    post_event(client, "ONCRMDEALUPDATE", deal_id, t0)
    post_event(client, "ONCRMDEALUPDATE", deal_id, t0 + timedelta(seconds=5))
    run_worker_once()
    assert status_of(order) == "cancelled"
    assert SyncRecord.objects.get(entity="deal", local_id=order.pk).remote_changed_at == applied


def test_a_deleted_deal_unlinks_the_order_and_is_not_recreated(sandbox, alice, webhook_entries, operation_entries):
    order = linked_order(alice)
    deal_id = order.bitrix_deal_id
    operations_before = len(operation_entries())

    control(sandbox, f"deals/{deal_id}/delete")
    (entry,) = wait_for_entries(webhook_entries, 1)
    assert entry["event"] == "ONCRMDEALDELETE"
    run_worker_once()

    order.refresh_from_db()
    assert order.bitrix_deal_id is None
    sync = SyncRecord.objects.get(entity="deal", local_id=order.pk)
    assert sync.state == SyncRecord.State.FAILED
    assert f"deal {deal_id} deleted in Bitrix at " in sync.last_error
    assert sandbox.records("deal") == []
    assert len(operation_entries()) == operations_before
    run_worker_once()
    assert sandbox.records("deal") == []


def test_an_unknown_stage_is_acknowledged_and_changes_nothing(sandbox, alice, webhook_entries, redis_client, caplog):
    order = linked_order(alice)

    move_stage(sandbox, order.bitrix_deal_id, "C3:UC_WEIRD")
    wait_for_entries(webhook_entries, 1)
    with caplog.at_level(logging.WARNING, logger="crmbridge.inbound"):
        run_worker_once()

    assert status_of(order) == "new"
    assert "'C3:UC_WEIRD', which BITRIX_STAGE_MAP does not map" in caplog.text
    assert redis_client.xpending(streams.webhooks_stream(), streams.GROUP)["pending"] == 0


def test_deals_that_are_not_ours_are_acknowledged_and_ignored(sandbox, alice, bob, client, redis_client, settings):
    order = linked_order(alice)
    foreign = BitrixClient(settings.BITRIX_WEBHOOK_URL).add(
        "deal", {"TITLE": "a manager's own deal", "STAGE_ID": "WON"}
    )
    # A second deal claiming our order (a duplicate made by hand): the order stays with its own deal.
    impostor = BitrixClient(settings.BITRIX_WEBHOOK_URL).add(
        "deal", {"TITLE": "copy", "STAGE_ID": "LOSE", "ORIGINATOR_ID": "bitrixsync", "ORIGIN_ID": f"order-{order.pk}"}
    )
    now = datetime.now(UTC)

    for deal_id in (foreign, impostor, 999_999):
        post_event(client, "ONCRMDEALUPDATE", deal_id, now)
    run_worker_once()

    order.refresh_from_db()
    assert order.status == "new" and order.bitrix_deal_id not in (foreign, impostor)
    assert redis_client.xpending(streams.webhooks_stream(), streams.GROUP)["pending"] == 0
    assert redis_client.xlen(streams.dead_letter_stream()) == 0


def test_an_event_for_a_new_order_waits_for_its_deal_to_be_linked(sandbox, alice, client, webhook_entries):
    """The create is still queued when the deal's event arrives: it must not be lost or misapplied."""
    events = {"handler_url": sandbox.portal.events.handler_url, "application_token": TOKEN, "echo_own_changes": True}
    control(sandbox, "events", events)
    order = Order.objects.create(owner=alice, service_id="welding", quantity=1, status="confirmed")

    run_worker_once()  # creates the deal; the sandbox echoes ONCRMDEALADD to the endpoint
    wait_for_entries(webhook_entries, 1)
    run_worker_once()

    order.refresh_from_db()
    assert order.bitrix_deal_id and order.status == "confirmed"


def test_an_invalid_message_becomes_a_dead_letter(sandbox, redis_client):
    redis_client.xadd(streams.webhooks_stream(), {"v": "1", "event": "ONCRMDEALUPDATE", "bitrix_id": "abc"})

    run_worker_once()

    (_, letter), *_ = redis_client.xrange(streams.dead_letter_stream())
    assert letter["reason"] == "invalid_message"
    assert letter["source_stream"] == streams.webhooks_stream()
    assert "data[FIELDS][ID]" in letter["error_description"]


def test_a_portal_in_trouble_is_retried_then_applied(sandbox, alice, client):
    order = linked_order(alice)
    silently_set_stage(order.bitrix_deal_id, "WON")
    post_event(client, "ONCRMDEALUPDATE", order.bitrix_deal_id, datetime.now(UTC))
    sandbox.set_faults(error_500_share=1.0)
    # The worker retries with backoff; let the portal recover after a moment.
    timer = threading.Timer(0.3, lambda: sandbox.set_faults(error_500_share=0.0))
    timer.start()

    run_worker_once(max_retries=50)
    timer.join()

    assert status_of(order) == "done"


def test_an_expired_webhook_pauses_the_worker_and_keeps_the_event(sandbox, alice, client, redis_client):
    order = linked_order(alice)
    post_event(client, "ONCRMDEALUPDATE", order.bitrix_deal_id, datetime.now(UTC))
    sandbox.set_faults(auth_error="expired_token")

    assert run_worker_once() == 2  # paused

    assert redis_client.xpending(streams.webhooks_stream(), streams.GROUP)["pending"] == 1
    assert redis_client.xlen(streams.dead_letter_stream()) == 0


def test_pull_deals_reapplies_the_current_stage_of_every_linked_deal(sandbox, alice, bob, webhook_entries):
    first, second = linked_order(alice), linked_order(bob)
    silently_set_stage(first.bitrix_deal_id, "WON")
    silently_set_stage(second.bitrix_deal_id, "EXECUTING")
    # Even with a last applied time ahead of our clock (the portal's clock runs fast).
    ahead = datetime.now(UTC) + timedelta(hours=1)
    SyncRecord.objects.filter(entity="deal").update(remote_changed_at=ahead)

    out = io.StringIO()
    call_command("bitrix_pull_deals", stdout=out)
    assert "Queued 2 deal update event(s)" in out.getvalue()
    assert {e["src"] for e in webhook_entries()} == {"pull"}
    run_worker_once()

    assert (status_of(first), status_of(second)) == ("done", "in_production")
    # The pull resets the ordering state to its own time (issue 13): a later portal event is not hidden.
    assert SyncRecord.objects.get(entity="deal", local_id=first.pk).remote_changed_at is None


def test_a_stage_of_a_mapped_pipeline_maps_back_to_the_order_status(sandbox, alice, webhook_entries, settings):
    """Issue 20 item 3: a deal in pipeline 3 reports C3:... stages; they map back like the default ones."""
    sandbox.configure({"categories": {"3": "Manufacturing"}})
    settings.BITRIX_DEAL_CATEGORY_MAP = {"cnc-milling": 3}
    order = linked_order(alice)
    assert deal_in(sandbox, order.bitrix_deal_id)["CATEGORY_ID"] == "3"

    move_stage(sandbox, order.bitrix_deal_id, "C3:EXECUTING")
    wait_for_entries(webhook_entries, 1)
    assert run_worker_once() == 0

    assert status_of(order) == "in_production"
