"""Issue 13, item 5: a far-future ``ts`` must not freeze an order's status for good."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from crmbridge.models import SyncRecord
from tests.inbound.helpers import linked_order, move_stage, post_event, status_of, wait_for_entries
from tests.worker.helpers import run_worker_once

pytestmark = [pytest.mark.urls("tests.inbound.urls"), pytest.mark.django_db(transaction=True)]

FAR_FUTURE = datetime(2150, 1, 1, tzinfo=UTC)


def test_a_far_future_ts_does_not_hide_later_real_changes(sandbox, alice, client, webhook_entries, settings):
    settings.BITRIX_INBOUND_MAX_CLOCK_SKEW_SECONDS = 300
    order = linked_order(alice)
    post_event(client, "ONCRMDEALUPDATE", order.bitrix_deal_id, FAR_FUTURE)
    run_worker_once()
    remembered = SyncRecord.objects.get(entity="deal", local_id=order.pk).remote_changed_at
    assert remembered <= datetime.now(UTC) + timedelta(seconds=1)  # ordered by our clock, not 2150

    time.sleep(1.1)  # the portal's ts has whole seconds
    move_stage(sandbox, order.bitrix_deal_id, "WON")  # a real change, a moment later
    wait_for_entries(webhook_entries, 2)
    run_worker_once()

    assert status_of(order) == "done"


def test_pull_deals_clears_a_far_future_ordering_state(sandbox, alice, client, webhook_entries):
    order = linked_order(alice)
    SyncRecord.objects.filter(entity="deal", local_id=order.pk).update(remote_changed_at=FAR_FUTURE)  # an old bug

    call_command("bitrix_pull_deals", stdout=io.StringIO())
    run_worker_once()

    assert SyncRecord.objects.get(entity="deal", local_id=order.pk).remote_changed_at is None  # reset
    move_stage(sandbox, order.bitrix_deal_id, "EXECUTING")
    wait_for_entries(webhook_entries, 2)
    run_worker_once()
    assert status_of(order) == "in_production"
