"""``bitrix_resync`` queues create or update for the selected records, in chunks, safely twice.

Also pinned: the dry run counts only what the options select; ``resync()`` on its own covers
every record in chunks of 500; a chunk's rows are this publisher's until sent; a resync logs
each publish at DEBUG (one INFO line per record would flood the log of a large resync).
"""

from __future__ import annotations

import logging
from datetime import datetime
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import transaction

from crmbridge.models import OutboxEntry, SyncRecord
from crmbridge.publishing.outbox import relay_outbox
from crmbridge.publishing.publisher import publisher_name
from crmbridge.publishing.resync import queue_resync_for, resync_plan
from crmbridge.publishing.resync import resync as resync_records
from orders.models import Order
from tests.publishing.helpers import make_order, make_user, published

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def records(django_user_model, settings, redis_client):
    """Made while sync was off (as if imported before the integration existed)."""
    settings.BITRIX_ENABLED = False
    henry = make_user(django_user_model, "henry")
    iris = make_user(django_user_model, "iris")
    type(iris).objects.filter(pk=iris.pk).update(bitrix_contact_id=70)
    new = make_order(henry)
    synced = make_order(iris)
    Order.objects.filter(pk=synced.pk).update(bitrix_deal_id=90)
    old = make_order(henry)
    Order.objects.filter(pk=old.pk).update(updated_at=datetime(2020, 1, 1, tzinfo=datetime.now().astimezone().tzinfo))
    settings.BITRIX_ENABLED = True
    assert published(redis_client) == []
    return {"henry": henry.pk, "iris": iris.pk, "new": new.pk, "synced": synced.pk, "old": old.pk}


def resync(*args) -> str:
    out = StringIO()
    call_command("bitrix_resync", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_resync_all(records, redis_client):
    output = resync()

    r = records
    assert published(redis_client) == [
        ("deal", "create", r["new"], "resync"),
        ("deal", "update", r["synced"], "resync"),
        ("deal", "create", r["old"], "resync"),
        ("contact", "create", r["henry"], "resync"),
        ("contact", "update", r["iris"], "resync"),
    ]
    assert "Queued 5 operation(s) (src=resync)" in output and "safe" in output
    assert not OutboxEntry.objects.exists()  # the command deletes what it sent before it reports
    assert SyncRecord.objects.filter(state=SyncRecord.State.WAITING).count() == 5


def test_resync_orders_only(records, redis_client):
    resync("--orders")
    assert {(e[0], e[2]) for e in published(redis_client)} == {
        ("deal", records["new"]), ("deal", records["synced"]), ("deal", records["old"]),
    }  # fmt: skip


def test_resync_users_missing_only(records, redis_client):
    resync("--users", "--missing-only")
    assert published(redis_client) == [("contact", "create", records["henry"], "resync")]


def test_resync_since(records, redis_client):
    resync("--orders", "--since", "2024-01-01", "--chunk-size", "1")
    assert published(redis_client) == [
        ("deal", "create", records["new"], "resync"),
        ("deal", "update", records["synced"], "resync"),
    ]


def test_resync_twice_is_safe(records, redis_client):
    resync("--chunk-size", "2")
    first = published(redis_client)
    resync("--chunk-size", "2")

    assert published(redis_client) == first + first  # the worker syncs current state: a repeat is harmless
    assert SyncRecord.objects.count() == 5
    assert not OutboxEntry.objects.exists()


def test_dry_run_queues_nothing(records, redis_client):
    output = resync("--dry-run")
    assert "orders (deals): 2 to create, 1 to update" in output
    assert "users (contacts): 1 to create, 1 to update" in output
    assert published(redis_client) == []
    assert not OutboxEntry.objects.exists() and not SyncRecord.objects.exists()


def test_with_redis_down_the_operations_wait_in_the_outbox(records, private_redis, redis_client):
    private_redis.stop()
    output = resync("--chunk-size", "2")
    assert "5 operation(s) are still in the outbox" in output
    private_redis.start()

    assert relay_outbox() == 5
    assert len(published(redis_client)) == 5


def test_queue_resync_for_selected_records(records, redis_client):
    with transaction.atomic():
        assert queue_resync_for("deal", [records["synced"], records["new"], 999_999]) == 2
        assert published(redis_client) == []  # at commit
    assert published(redis_client) == [
        ("deal", "create", records["new"], "admin"),
        ("deal", "update", records["synced"], "admin"),
    ]


def test_bad_since_is_a_usage_error(records):
    with pytest.raises(Exception, match="2024-13-01"):
        resync("--since", "2024-13-01")


def test_the_dry_run_counts_only_the_records_the_options_select(records):
    missing = resync("--orders", "--missing-only", "--dry-run").splitlines()
    recent = resync("--orders", "--since", "2024-01-01", "--dry-run").splitlines()

    assert "orders (deals): 2 to create, 0 to update" in missing
    assert "orders (deals): 1 to create, 1 to update" in recent


def test_the_plan_and_the_resync_cover_every_record_by_default_in_chunks_of_500(records, redis_client):
    more = [Order(owner_id=records["henry"], service_id="welding", quantity=1) for _ in range(498)]
    Order.objects.bulk_create(more)  # no signals: nothing queued
    assert resync_plan() == {"deal": {"create": 500, "update": 1}, "contact": {"create": 1, "update": 1}}

    chunks = []
    assert resync_records(on_progress=chunks.append) == 503
    assert chunks == [500, 1, 2]  # orders, then users
    assert len(published(redis_client)) == 503


def test_queueing_unknown_records_queues_nothing(records, redis_client):
    assert queue_resync_for("deal", [999_999]) == 0
    assert not OutboxEntry.objects.exists() and published(redis_client) == []


def test_a_chunks_rows_are_claimed_by_the_publisher_until_they_are_sent(records, redis_client):
    with transaction.atomic():
        queue_resync_for("deal", [records["new"]])
        row = OutboxEntry.objects.get()
        assert row.claimed_by == publisher_name() and row.claimed_until is not None  # the relay leaves it alone
    assert published(redis_client) == [("deal", "create", records["new"], "admin")]


def test_a_resync_logs_each_publish_at_debug_only(records, caplog):
    caplog.set_level(logging.DEBUG, logger="crmbridge.publishing")
    resync()

    levels = [r.levelname for r in caplog.records if r.getMessage().startswith("[QUEUE] Published")]
    assert levels == ["DEBUG"] * 5
