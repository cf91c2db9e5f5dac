"""The coalescing protocol in Redis, without a worker (``crmbridge.publishing.coalescing``).

Pinned: a change published while its record's message is pending joins that message
(``Sent.coalesced``, no entry added) and sets that record's dirty flag, no other; and
``ack_unless_dirty`` acknowledges the clean records' entries, refuses the dirty one's and
returns exactly the refused records. The worker's end-to-end tests cannot see these: it
survives an error here (the messages are synced again), and a wrong flag only costs a sync.
"""

from __future__ import annotations

import pytest
from django.db import transaction

from crmbridge.publishing.coalescing import ack_unless_dirty, dirty_key
from crmbridge.publishing.messages import Operation
from crmbridge.publishing.outbox import Sent, publish_entries, write_entries
from crmbridge.publishing.publisher import publish_client
from crmbridge.redis_io import streams

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def coalescing(settings):
    settings.BITRIX_PUBLISH_COALESCE = True


def publish(entity: str, op: str, local_id: int) -> Sent:
    with transaction.atomic():
        entries = write_entries([Operation(entity=entity, op=op, local_id=local_id)])
    (sent,) = publish_entries(publish_client(), entries).sent
    return sent


def deliver(redis_client) -> None:
    """The consumer group reads everything in the operations stream: it is all pending."""
    stream = streams.operations_stream()
    redis_client.xgroup_create(stream, streams.GROUP, id="0", mkstream=True)
    redis_client.xreadgroup(streams.GROUP, "worker-1", {stream: ">"})


def pending(redis_client) -> list[str]:
    rows = redis_client.xpending_range(streams.operations_stream(), streams.GROUP, "-", "+", 100)
    return [row["message_id"] for row in rows]


def test_a_change_while_the_records_message_is_pending_joins_it_and_marks_only_that_record_dirty(redis_client):
    first = publish("deal", "create", 2)
    publish("deal", "create", 3)
    deliver(redis_client)

    joined = publish("deal", "update", 2)

    assert (joined.added, joined.coalesced, joined.message_id) == (False, True, first.message_id)
    assert redis_client.xlen(streams.operations_stream()) == 2
    assert redis_client.get(dirty_key("deal", 2)) == "1"
    assert redis_client.keys(dirty_key("*", "*")) == [dirty_key("deal", 2)]


def test_ack_unless_dirty_acknowledges_the_clean_records_and_returns_the_dirty_one(redis_client):
    records = [("deal", 2), ("deal", 3), ("contact", 3)]
    ids = [publish(entity, "create", local_id).message_id for entity, local_id in records]
    deliver(redis_client)
    redis_client.set(dirty_key("deal", 3), "1")  # a change to deal 3 was skipped meanwhile

    batches = {record: [message_id] for record, message_id in zip(records, ids, strict=True)}
    refused = ack_unless_dirty(redis_client, streams.operations_stream(), streams.GROUP, batches)

    assert refused == {("deal", 3)}
    assert pending(redis_client) == [ids[1]]
