"""Creating and updating orders and users publishes exactly the right operation, with the spec's log lines.

These tests run in autocommit (``transaction=True``), as a web request does, so
on-commit publishing happens for real.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from django.core.signals import request_finished, request_started
from django.db import transaction

from crmbridge.models import OutboxEntry, SyncRecord
from crmbridge.publishing.publisher import queue_deal_creation, queue_deal_update
from orders.models import Order
from tests.publishing.helpers import FIELDS, make_order, make_user, messages, published, unsent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def carol(django_user_model):
    return make_user(django_user_model, "carol")


def last_entry(redis_client) -> tuple[str, dict]:
    return redis_client.xrevrange("bitrix:operations", count=1)[0]


def assert_logged(caplog, entity: str, op: str, local_id: int, tag: str, what: str, message_id: str) -> None:
    local = "order" if entity == "deal" else "user"
    stream = "bitrix:operations"
    assert messages(caplog, "[QUEUE]") == [
        f"[QUEUE] Published {op} operation for {entity} {local_id} to stream {stream} (message_id: {message_id})"
    ]
    assert messages(caplog, f"[{tag}]") == [f"[{tag}] Queued {what} for {local} {local_id} (message_id: {message_id})"]
    published_at = next(i for i, r in enumerate(caplog.records) if r.getMessage().startswith("[QUEUE]"))
    queued_at = next(i for i, r in enumerate(caplog.records) if r.getMessage().startswith(f"[{tag}]"))
    assert published_at < queued_at  # the order of the specification's example


def test_order_creation_publishes_deal_create(carol, redis_client, caplog):
    order = make_order(carol)

    message_id, fields = last_entry(redis_client)
    assert set(fields) == FIELDS
    assert (fields["v"], fields["entity"], fields["op"], fields["id"], fields["src"]) == (
        "1", "deal", "create", str(order.pk), "signal",
    )  # fmt: skip
    assert datetime.fromisoformat(fields["ts"]).tzinfo is not None
    assert published(redis_client) == [
        ("contact", "create", carol.pk, "signal"),
        ("deal", "create", order.pk, "signal"),
    ]
    assert_logged(caplog, "deal", "create", order.pk, "QUEUE_DEAL", "deal creation", message_id)
    assert unsent(redis_client) == []
    record = SyncRecord.objects.get(entity="deal", local_id=order.pk)
    assert record.state == SyncRecord.State.WAITING and record.last_queued_at is not None


def test_order_update_publishes_deal_update(carol, redis_client, caplog):
    order = make_order(carol)
    caplog.clear()
    order.quantity = 7
    order.save()

    message_id, fields = last_entry(redis_client)
    assert (fields["entity"], fields["op"], fields["id"]) == ("deal", "update", str(order.pk))
    assert published(redis_client)[-2:] == [
        ("deal", "create", order.pk, "signal"),
        ("deal", "update", order.pk, "signal"),
    ]
    assert_logged(caplog, "deal", "update", order.pk, "QUEUE_DEAL_UPDATE", "deal update", message_id)
    assert unsent(redis_client) == []


def test_user_creation_publishes_contact_create(django_user_model, redis_client, caplog):
    dave = make_user(django_user_model, "dave")

    message_id, _fields = last_entry(redis_client)
    assert published(redis_client) == [("contact", "create", dave.pk, "signal")]
    assert_logged(caplog, "contact", "create", dave.pk, "QUEUE_CONTACT", "contact creation", message_id)
    assert SyncRecord.objects.get(entity="contact", local_id=dave.pk).state == SyncRecord.State.WAITING


def test_user_update_publishes_contact_update(carol, redis_client, caplog):
    caplog.clear()
    carol.email = "carol.new@example.com"
    carol.save()

    message_id, _fields = last_entry(redis_client)
    assert published(redis_client) == [
        ("contact", "create", carol.pk, "signal"),
        ("contact", "update", carol.pk, "signal"),
    ]
    assert_logged(caplog, "contact", "update", carol.pk, "QUEUE_CONTACT_UPDATE", "contact update", message_id)


def test_queue_function_returns_message_id_when_published_at_once(carol, redis_client):
    order = make_order(carol)
    message_id = queue_deal_update(order.pk)
    assert message_id == last_entry(redis_client)[0]


def test_inside_a_transaction_it_publishes_at_commit_and_returns_none(carol, redis_client):
    with transaction.atomic():
        order = make_order(carol)
        assert queue_deal_creation(order.pk) is None
        assert published(redis_client) == [("contact", "create", carol.pk, "signal")]  # not yet
        assert len(unsent(redis_client)) == 2
    assert published(redis_client)[1:] == [("deal", "create", order.pk, "signal")] * 2
    assert unsent(redis_client) == []


def test_rollback_publishes_nothing_and_keeps_no_outbox_row(carol, redis_client, caplog):
    caplog.clear()
    before = published(redis_client)
    with pytest.raises(RuntimeError), transaction.atomic():
        order = make_order(carol)
        carol.first_name = "Caroline"
        carol.save()
        queue_deal_update(order.pk)
        raise RuntimeError("the request failed")

    assert published(redis_client) == before
    assert unsent(redis_client) == []
    assert not Order.objects.exists()
    assert not SyncRecord.objects.filter(entity="deal").exists()
    assert messages(caplog, "[QUEUE") == []


def test_bitrix_disabled_queues_nothing(settings, django_user_model, redis_client, caplog):
    settings.BITRIX_ENABLED = False
    erin = make_user(django_user_model, "erin")
    order = make_order(erin)
    order.status = Order.Status.CONFIRMED
    order.save()
    erin.phone = "+15550100"
    erin.save()

    assert queue_deal_update(order.pk) is None
    assert published(redis_client) == []
    assert not OutboxEntry.objects.exists()
    assert not SyncRecord.objects.exists()
    assert messages(caplog, "[QUEUE") == []


def test_inside_a_request_it_publishes_once_the_response_is_sent(carol, redis_client, caplog):
    request_started.send(sender=None)
    order = make_order(carol)
    assert queue_deal_update(order.pk) is None
    assert published(redis_client) == [("contact", "create", carol.pk, "signal")]  # committed, not yet sent
    assert messages(caplog, "[QUEUE_DEAL]") == []

    request_finished.send(sender=None)

    assert published(redis_client)[1:] == [
        ("deal", "create", order.pk, "signal"),
        ("deal", "update", order.pk, "signal"),
    ]
    assert len(messages(caplog, "[QUEUE_DEAL] Queued deal creation")) == 1
    assert len(messages(caplog, "[QUEUE_DEAL_UPDATE] Queued deal update")) == 1
    assert unsent(redis_client) == []


def test_a_request_that_never_finished_is_published_when_the_next_one_starts(carol, redis_client):
    request_started.send(sender=None)
    order = make_order(carol)
    request_started.send(sender=None)  # the server skipped request_finished
    assert published(redis_client)[-1] == ("deal", "create", order.pk, "signal")
    request_finished.send(sender=None)


def test_through_the_api_the_order_is_in_the_stream_when_the_response_arrives(alice_client, alice, redis_client):
    response = alice_client.post("/orders", {"service_id": "welding", "quantity": 1}, format="json")
    assert response.status_code == 201
    assert published(redis_client)[-1] == ("deal", "create", response.json()["id"], "signal")
