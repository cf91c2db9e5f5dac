"""Reconciliation: records the database says are waiting, with no message left to sync them.

A ``SyncRecord`` in state ``waiting`` means "an operation is on its way". If
Redis loses its data (restarted without persistence, replaced, a failover to a
replica that missed the last writes), the message is gone and nothing would
ever sync the record. ``lost_records`` finds records waiting longer than
``BITRIX_RECONCILE_AFTER`` seconds for which there is no *live* message:

* no row in the outbox not yet in Redis (waiting to be relayed or being
  published; a row whose "sent" marker exists is only waiting for its delete),
* no entry in ``{prefix}operations`` that is unacknowledged: not yet delivered
  (after the group's last-delivered ID) or in the pending list (a worker holds
  it: processing, retrying, deferred, paused),
* no dead letter for it (an operator decides about those; requeueing them
  here would retry a permanent failure for ever).

``reconcile`` queues them again (``src=reconcile``) through the outbox, like
any change. A running worker calls it every ``BITRIX_RECONCILE_INTERVAL``
seconds (one worker at a time, by a short Redis lock); ``bitrix_doctor``
reports what ``lost_records`` finds as a FAIL.

Duplicates: a re-queued message is an ordinary one. The worker syncs the
record's current state; a record whose ``add`` may have reached Bitrix
before the loss still has its create marker (in the database, not in Redis),
so the worker looks it up by ``ORIGIN_ID`` before adding: never a second deal.

Order of the reads: candidates first, then the outbox, then the stream, then
the candidates again (still waiting, queued at the same time). A message
moving from the outbox to the stream between the two reads is seen in the
stream; a record synced meanwhile is dropped by the second read.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from crmbridge import entities
from crmbridge.models import OutboxEntry, SyncRecord
from crmbridge.publishing.messages import Operation
from crmbridge.publishing.outbox import already_sent, relay_outbox, write_entries
from crmbridge.redis_io import streams, telemetry
from crmbridge.worker.dead_letters import parse_dead_letter

logger = logging.getLogger("crmbridge.worker")

Key = tuple[str, int]
PAGE = 1000
LIMIT = 500  # records per round: a large loss is requeued over a few rounds


def lost_records(client: redis.Redis, *, older_than: float | None = None, limit: int = LIMIT) -> list[Key]:
    """Records waiting longer than ``older_than`` seconds with no live message, oldest first."""
    older_than = settings.BITRIX_RECONCILE_AFTER if older_than is None else older_than
    candidates = _candidates(older_than, limit)
    if not candidates:
        return []
    live = _outbox_keys(client) | _stream_keys(client) | _dead_letter_keys(client)
    suspects = {key: queued for key, queued in candidates.items() if key not in live}
    if not suspects:
        return []
    still = _candidates(older_than, limit)  # synced or queued again meanwhile: not lost
    return [key for key, queued in suspects.items() if still.get(key) == queued]


def reconcile(client: redis.Redis, *, older_than: float | None = None) -> int:
    """Queue every lost record again; returns how many. Logged and counted (outcome ``reconciled``).

    ``older_than`` defaults to ``BITRIX_RECONCILE_AFTER``; 0 right after Redis lost its data
    (``crmbridge.worker.redis_loss``).
    """
    older_than = settings.BITRIX_RECONCILE_AFTER if older_than is None else older_than
    lost = lost_records(client, older_than=older_than)
    if not lost:
        return 0
    operations = [Operation(entity, _op(entity, local_id), local_id, src="reconcile") for entity, local_id in lost]
    with transaction.atomic():
        write_entries(operations)
    for operation in operations:
        logger.warning(
            "[WORKER] Reconciliation: %s %s waited over %ss with no message in Redis; queued again (%s)",
            operation.entity, operation.local_id, f"{older_than:g}", operation.op,
        )  # fmt: skip
        telemetry.count(client, "reconciled", operation.entity, operation.op)
    relay_outbox()
    return len(operations)


def _op(entity: str, local_id: int) -> str:
    record = entities.get(entity)
    linked = record.model().objects.filter(pk=local_id, **{f"{record.bitrix_id_field}__isnull": False}).exists()
    return "update" if linked else "create"


def _candidates(older_than: float, limit: int) -> dict[Key, object]:
    cutoff = timezone.now() - timedelta(seconds=older_than)
    # A row with no queue time was made by the worker itself (a user synced along with
    # its order): its age is that of its create marker.
    old = Q(last_queued_at__lt=cutoff) | Q(last_queued_at__isnull=True, create_started_at__lt=cutoff)
    rows = (
        SyncRecord.objects.filter(old, state=SyncRecord.State.WAITING)
        .order_by("last_queued_at")
        .values_list("entity", "local_id", "last_queued_at")[:limit]
    )
    return {(entity, local_id): queued for entity, local_id, queued in rows}


def _key_of(fields: dict) -> Key | None:
    try:
        operation = Operation.from_fields(fields)
    except ValueError:
        return None
    return (operation.entity, operation.local_id)


def _outbox_keys(client: redis.Redis) -> set[Key]:
    """Records with an outbox row not yet in Redis (a row already sent waits only for its delete)."""
    rows = list(OutboxEntry.objects.filter(stream="operations").only("fields", "dedup_key")[: PAGE * 10])
    keys = set()
    for row, sent in zip(rows, already_sent(client, rows), strict=True):
        key = _key_of(row.fields) if isinstance(row.fields, dict) and not sent else None
        if key:
            keys.add(key)
    return keys


def _stream_keys(client: redis.Redis) -> set[Key]:
    """Records named by unacknowledged entries of the operations stream."""
    stream = streams.operations_stream()
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError:  # no stream: nothing live in it
        return set()
    group = next((g for g in groups if g["name"] == streams.GROUP), None)
    if group is None:  # no group: every entry is still to be delivered
        return {key for _, fields in _entries(client, stream, "-") if (key := _key_of(fields))}
    last_delivered = streams.parse_id(group["last-delivered-id"])
    pending = _pending_ids(client, stream)
    start = min(pending, key=streams.parse_id) if pending else group["last-delivered-id"]
    keys = set()
    for entry_id, fields in _entries(client, stream, start):
        if (entry_id in pending or streams.parse_id(entry_id) > last_delivered) and (key := _key_of(fields)):
            keys.add(key)
    return keys


def _pending_ids(client: redis.Redis, stream: str) -> set[str]:
    ids: set[str] = set()
    start = "-"
    while True:
        page = client.xpending_range(stream, streams.GROUP, min=start, max="+", count=PAGE)
        ids.update(p["message_id"] for p in page)
        if len(page) < PAGE:
            return ids
        start = "(" + page[-1]["message_id"]


def _dead_letter_keys(client: redis.Redis) -> set[Key]:
    keys = set()
    for entry_id, fields in _entries(client, streams.dead_letter_stream(), "-"):
        letter = parse_dead_letter(entry_id, fields)
        if (letter["source_stream"] or streams.operations_stream()) != streams.operations_stream():
            continue
        payload = letter["payload"]
        if isinstance(payload, dict) and (key := _key_of({str(k): str(v) for k, v in payload.items()})):
            keys.add(key)
    return keys


def _entries(client: redis.Redis, stream: str, start: str):
    while True:
        try:
            page = client.xrange(stream, min=start, max="+", count=PAGE)
        except redis.ResponseError:  # not a stream (WRONGTYPE): nothing to read
            return
        yield from page
        if len(page) < PAGE:
            return
        start = "(" + page[-1][0]
