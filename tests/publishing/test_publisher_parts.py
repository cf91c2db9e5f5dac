"""Parts of publishing the end-to-end tests use only as built at import (found by mutation testing).

``KINDS`` and the module's circuit breaker are made when ``crmbridge.publishing.publisher`` is
imported; these build their own, so a change to how they are made shows.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

import pytest

from crmbridge.models import OutboxEntry
from crmbridge.publishing import signals
from crmbridge.publishing.outbox import SentRows
from crmbridge.publishing.publisher import KINDS, CircuitBreaker, Kind
from crmbridge.publishing.resync import selection
from crmbridge.publishing.signals import SNAPSHOT_ATTR, bitrix_fields_changed
from orders.models import Order
from tests.publishing.helpers import make_order, published

KEY = uuid.UUID(int=7)


@pytest.mark.parametrize(
    ("entity", "op", "expected"),
    [
        ("deal", "create", Kind("QUEUE_DEAL", "deal creation", "order")),
        ("deal", "update", Kind("QUEUE_DEAL_UPDATE", "deal update", "order")),
        ("contact", "create", Kind("QUEUE_CONTACT", "contact creation", "user")),
        ("contact", "update", Kind("QUEUE_CONTACT_UPDATE", "contact update", "user")),
    ],
)
def test_the_spec_log_tags_and_words_of_each_kind(entity, op, expected):
    assert Kind.of(entity, op) == expected == KINDS[entity, op]


def test_a_new_breaker_opens_on_a_failure_and_closes_on_a_success(settings, caplog):
    settings.BITRIX_PUBLISH_BREAKER_SECONDS = 60
    breaker = CircuitBreaker()
    assert breaker.allow() and not breaker.is_open()

    with caplog.at_level(logging.INFO, logger="crmbridge.publishing"):
        breaker.record_failure(ConnectionError("refused"))
        assert breaker.is_open() and not breaker.allow()  # cooling down: nobody publishes
        breaker.record_success()
    assert breaker.allow() and not breaker.is_open()
    assert "publishing after commit paused for 60 s" in caplog.text


@pytest.mark.django_db
def test_a_resync_since_an_aware_moment_keeps_its_zone(alice):
    order = make_order(alice)
    Order.objects.filter(pk=order.pk).update(updated_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC))

    assert list(selection("deal", since=datetime(2024, 5, 1, 11, 59, tzinfo=UTC))) == [order]
    assert list(selection("deal", since=datetime(2024, 5, 1, 12, 1, tzinfo=UTC))) == []


def test_a_fresh_sent_rows_list_gives_back_what_it_was_given():
    rows = SentRows()
    assert rows.take() == []
    assert rows.add([OutboxEntry(pk=1, dedup_key=KEY)]) is False
    assert rows.take() == [(1, KEY)] and rows.take() == []


@pytest.mark.django_db
def test_fields_never_loaded_do_not_count_as_changed_and_no_snapshot_counts_as_all(alice):
    order = make_order(alice)
    deferred = Order.objects.only("id").get(pk=order.pk)  # Bitrix fields deferred, never loaded
    assert bitrix_fields_changed(deferred) is False

    loaded = Order.objects.get(pk=order.pk)
    assert bitrix_fields_changed(loaded) is False
    del loaded.__dict__[SNAPSHOT_ATTR]  # e.g. made without post_init
    assert bitrix_fields_changed(loaded) is True


@pytest.mark.django_db(transaction=True)
def test_connecting_the_handlers_again_adds_no_second_receiver(alice, redis_client):
    signals.connect()
    signals.connect()

    order = make_order(alice)

    assert [e for e in published(redis_client) if e[0] == "deal"] == [("deal", "create", order.pk, "signal")]


@pytest.mark.django_db(transaction=True)
def test_a_queued_row_is_claimed_by_its_publisher_and_keeps_its_source(redis_client):
    """Until its transaction commits and it is sent, a row written by ``queue_operation`` is this
    publisher's (the relay leaves it alone), and the message says where it came from (``src``)."""
    from django.db import transaction

    from crmbridge.publishing.publisher import publisher_name, queue_operation
    from crmbridge.redis_io import streams

    with transaction.atomic():
        queue_operation("deal", "update", 41, src="resync")
        row = OutboxEntry.objects.get()
        assert row.claimed_by == publisher_name() and row.claimed_until is not None

    ((_id, fields),) = redis_client.xrange(streams.operations_stream())
    assert (fields["id"], fields["src"]) == ("41", "resync")
