"""Reading what was published, and making records."""

from __future__ import annotations

import redis

from crmbridge.models import OutboxEntry
from crmbridge.publishing.outbox import sent_marker_key
from crmbridge.redis_io import streams
from orders.models import Order

FIELDS = {"v", "entity", "op", "id", "ts", "src"}


def published(client: redis.Redis) -> list[tuple[str, str, int, str]]:
    """(entity, op, local id, src) of every entry in the operations stream, in stream order."""
    return [
        (fields["entity"], fields["op"], int(fields["id"]), fields["src"])
        for _id, fields in client.xrange(streams.operations_stream())
    ]


def make_order(owner, **extra) -> Order:
    return Order.objects.create(owner=owner, service_id="cnc-milling", quantity=2, **extra)


def make_user(django_user_model, username: str, **extra):
    return django_user_model.objects.create_user(
        username=username, email=f"{username}@example.com", password="S3cure-pass-1", **extra
    )


def messages(caplog, prefix: str) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.getMessage().startswith(prefix)]


def unsent(client: redis.Redis) -> list[int]:
    """IDs of outbox rows not in their stream yet.

    Rows already sent whose delete is deferred to the next write (see
    ``crmbridge.publishing.outbox``) do not count: their sent marker exists.
    """
    return [entry.pk for entry in OutboxEntry.objects.all() if not client.exists(sent_marker_key(entry))]
