"""The transactional outbox: an operation is written with the change, published after.

``crmbridge.publishing.publisher`` writes an ``OutboxEntry`` in the caller's transaction
and publishes it after the commit (in a web request, once the response has
been sent). Whatever is left over (Redis down or
slow, the process died after the commit) is published by ``relay_outbox``,
which the worker runs on every loop iteration and ``manage.py
bitrix_relay_outbox`` runs on its own. A rolled-back transaction takes its
entries with it, so nothing is published for it.

Coalescing: a change for a record that already has an unacknowledged
message adds no entry; the script sets the record's dirty flag instead (see
``crmbridge.publishing.coalescing``). The entry still counts as sent (its marker names
the message it joined).

Exactly once into the stream: ``PUBLISH_SCRIPT`` checks a marker
``{prefix}outbox:sent:<dedup_key>``, XADDs and sets the marker, atomically
(a Lua script runs alone in Redis). The row is deleted only after Redis has
answered. A publisher that dies between XADD and the delete, or two publishers
racing on one entry (the request and a relay), therefore add it once: the
later one finds the marker and only deletes the row. The marker lives
``SENT_MARKER_TTL_SECONDS``; a row left undeleted longer than that would be
sent again, which is harmless (the worker syncs the record's current state).

Deferred deletes: a request that published its entry after commit does not
delete the row in a transaction of its own (that extra commit was most of the
cost of publishing). It notes the row in ``sent_rows``, and the next
``write_entries`` of this process deletes it inside its caller's transaction,
without a commit of its own. A row whose process goes idle or
dies is removed by the relay once its claim runs out: the marker tells the
relay it was sent, so it deletes it without adding it again.

Claims (``claimed_until``/``claimed_by``, taken by a conditional UPDATE) keep
two relays off the same rows; they save work, correctness does not need them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import redis
from django.conf import settings
from django.db import connections, router
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from crmbridge.models import OutboxEntry
from crmbridge.publishing import outbox_sql
from crmbridge.publishing.coalescing import UNACKNOWLEDGED_LUA, dirty_key, last_key
from crmbridge.publishing.messages import Operation
from crmbridge.redis_io import streams
from crmbridge.redis_io.connection import get_redis

logger = logging.getLogger(__name__)

SENT_MARKER_TTL_SECONDS = 86400
# How long a relay may work on the rows it claimed before another may take them.
RELAY_LEASE_SECONDS = 60

# KEYS[1] stream, KEYS[2] sent marker, KEYS[3] the record's last message, KEYS[4] its dirty flag;
# ARGV[1] marker TTL, ARGV[2] consumer group ('' : no coalescing), ARGV[3..] field/value pairs.
# Returns {1, new id}, {0, id it was added with before} or {2, id of the record's
# unacknowledged message it joined} (coalesced, see ``crmbridge.publishing.coalescing``).
# XADD comes before SET so that a failing XADD (e.g. out of memory) leaves no
# marker behind: a marker set first would make the entry count as sent and be lost.
PUBLISH_SCRIPT = (
    UNACKNOWLEDGED_LUA
    + """
local previous = redis.call('GET', KEYS[2])
if previous then
    return {0, previous}
end
local last = redis.call('GET', KEYS[3])
if last and ARGV[2] ~= '' and unacknowledged(KEYS[1], ARGV[2], last) then
    redis.call('SET', KEYS[4], '1', 'EX', ARGV[1])
    redis.call('SET', KEYS[2], last, 'EX', ARGV[1])
    return {2, last}
end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
redis.call('SET', KEYS[2], id, 'EX', ARGV[1])
redis.call('SET', KEYS[3], id, 'EX', ARGV[1])
return {1, id}
"""
)


@dataclass(frozen=True)
class Sent:
    entry_id: int
    message_id: str
    added: bool  # False: another publisher had added it already, or it was coalesced
    coalesced: bool = False  # joined the record's unacknowledged message (no entry added)


@dataclass
class PublishResult:
    sent: list[Sent] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # entry id -> error, rows released


class SentRows:
    """Rows already in their stream whose delete is deferred (this process, all threads)."""

    LIMIT = 1000  # past this, delete at once rather than wait for a write to ride along

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: list[tuple[int, uuid.UUID]] = []

    def add(self, entries: Sequence[OutboxEntry]) -> bool:
        """Note ``entries``; True when the list is long enough to be deleted now."""
        with self._lock:
            self._rows.extend((entry.pk, entry.dedup_key) for entry in entries)
            return len(self._rows) >= self.LIMIT

    def take(self) -> list[tuple[int, uuid.UUID]]:
        with self._lock:
            rows, self._rows = self._rows, []
            return rows


sent_rows = SentRows()


def delete_sent_rows() -> int:
    """Delete the rows this process published but has not deleted yet; return how many it had.

    ``write_entries`` does this inside its caller's transaction (no commit of
    its own). If that transaction rolls back, the rows stay until the relay
    finds them sent.
    """
    rows = sent_rows.take()
    if rows:
        outbox_sql.delete_sent(connections[router.db_for_write(OutboxEntry)], rows)
    return len(rows)


def sent_marker_key(entry: OutboxEntry) -> str:
    return streams.key(f"outbox:sent:{entry.dedup_key}")


def already_sent(client: redis.Redis, entries: Sequence[OutboxEntry]) -> list[bool]:
    """For each row, whether its operation is in Redis already (its "sent" marker exists): one MGET.

    Such a row is no backlog: it only waits for its deferred delete.
    """
    if not entries:
        return []
    return [marker is not None for marker in client.mget([sent_marker_key(entry) for entry in entries])]


def write_entries(operations: Sequence[Operation], *, claimed_by: str = "", lease_seconds: float = 0) -> list:
    """Insert one outbox row per operation and mark the records waiting; call inside a transaction.

    ``lease_seconds`` > 0 creates the rows already claimed by ``claimed_by``
    (the publisher that will send them after the commit), so the relay leaves
    them alone unless that publisher dies. Rows this process sent earlier are
    deleted in the same transaction (see "Deferred deletes"); the SQL is in
    ``crmbridge.publishing.outbox_sql``.
    """
    now = timezone.now()
    until = now + timedelta(seconds=lease_seconds) if lease_seconds > 0 else None
    entries = [
        OutboxEntry(
            fields=op.to_fields(),
            created_at=now,
            claimed_until=until,
            claimed_by=claimed_by if until else "",
            dedup_key=uuid.uuid4(),
        )
        for op in operations
    ]
    keys = list(dict.fromkeys((op.entity, op.local_id) for op in operations))  # PostgreSQL: one row per key
    connection = connections[router.db_for_write(OutboxEntry)]
    outbox_sql.write(connection, sent=sent_rows.take(), entries=entries, keys=keys, now=now)
    return entries


def publish_entries(
    client: redis.Redis, entries: Sequence[OutboxEntry], *, log_level: int = logging.INFO, defer_delete: bool = False
) -> PublishResult:
    """Add each entry to its stream exactly once, then delete the rows that made it.

    Returns a ``PublishResult``. An entry Redis refused is released with its
    error for a later attempt; losing the connection raises ``redis.RedisError``
    (the caller releases the rows). One entry goes in one round trip; several
    go in one pipeline, oldest first. ``defer_delete`` leaves the delete to
    the next ``write_entries`` (see "Deferred deletes" above).
    """
    result = PublishResult()
    if not entries:
        return result
    script = client.register_script(PUBLISH_SCRIPT)
    if len(entries) == 1:
        replies = [_run_script(script, entries[0], client)]
    else:
        pipe = client.pipeline(transaction=False)
        for entry in entries:
            _run_script(script, entry, pipe)
        replies = pipe.execute(raise_on_error=False)
    for entry, reply in zip(entries, replies, strict=True):
        if isinstance(reply, Exception):
            result.failed[entry.pk] = describe_error(reply)
        else:
            added, coalesced = reply[0] == 1, reply[0] == 2
            result.sent.append(Sent(entry_id=entry.pk, message_id=reply[1], added=added, coalesced=coalesced))
            _log_sent(entry, result.sent[-1], log_level)
    sent_ids = {sent.entry_id for sent in result.sent}
    if not defer_delete:
        OutboxEntry.objects.filter(pk__in=sent_ids).delete()
    elif sent_rows.add([entry for entry in entries if entry.pk in sent_ids]):
        delete_sent_rows()
    for entry_id, error in result.failed.items():
        logger.warning("[QUEUE] Redis refused outbox entry %d (%s); kept for the relay", entry_id, error)
        release([entry_id], error)
    return result


def _run_script(script, entry: OutboxEntry, client):
    pairs = [item for pair in entry.fields.items() for item in pair]
    entity, local_id = entry.fields.get("entity", ""), entry.fields.get("id", "")
    keys = [streams.key(entry.stream), sent_marker_key(entry), last_key(entity, local_id), dirty_key(entity, local_id)]
    group = streams.GROUP if settings.BITRIX_PUBLISH_COALESCE else ""
    return script(keys=keys, args=[SENT_MARKER_TTL_SECONDS, group, *pairs], client=client)


def _log_sent(entry: OutboxEntry, sent: Sent, log_level: int) -> None:
    fields = entry.fields
    if sent.coalesced:
        logger.debug(
            "[QUEUE] %s %s already has an unacknowledged message (%s); outbox entry %d coalesced into it",
            fields.get("entity"), fields.get("id"), sent.message_id, entry.pk,
        )  # fmt: skip
        return
    if not sent.added:
        logger.debug(
            "[QUEUE] Outbox entry %d was already published (message_id: %s); removed", entry.pk, sent.message_id
        )
        return
    logger.log(
        log_level,
        "[QUEUE] Published %s operation for %s %s to stream %s (message_id: %s)",
        fields.get("op"),
        fields.get("entity"),
        fields.get("id"),
        streams.key(entry.stream),
        sent.message_id,
    )


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def release(entry_ids: Sequence[int], error: str) -> None:
    """Give rows back to the relay after a failed attempt, recording why."""
    OutboxEntry.objects.filter(pk__in=entry_ids).update(
        claimed_until=None, claimed_by="", attempts=F("attempts") + 1, last_error=error[:2000]
    )


def available(now) -> QuerySet:
    """Rows nobody is working on: never claimed, or whose claim has run out."""
    return OutboxEntry.objects.filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))


def waiting_entries() -> QuerySet:
    """Rows waiting for the relay: what an operator's "outbox backlog" should count.

    Leaves out rows a live publisher holds: those being published right after
    their commit, and those already sent whose delete is deferred (see above).
    """
    return available(timezone.now())


def relay_outbox(*, limit: int = 500) -> int:
    """Publish up to ``limit`` leftover outbox entries, oldest first; return how many left the outbox.

    Cheap when there is nothing to do: one query on the primary key. Rows are
    claimed by a conditional UPDATE first, so relays running at the same time
    share the work instead of repeating it. When Redis cannot be reached the
    rows are released with the error and 0 is returned (no exception): the
    caller just tries again later.
    """
    now = timezone.now()
    ids = list(available(now).order_by("id").values_list("id", flat=True)[:limit])
    if not ids:
        return 0
    entries = claim(ids, now=now, lease_seconds=RELAY_LEASE_SECONDS)
    if not entries:
        return 0
    try:
        result = publish_entries(get_redis(), entries)
    except redis.RedisError as exc:
        release([entry.pk for entry in entries], describe_error(exc))
        logger.warning("[QUEUE] Relay could not publish %d outbox entries: %s", len(entries), describe_error(exc))
        return 0
    if result.sent:
        logger.info("[QUEUE] Relayed %d operations from the outbox", len(result.sent))
    return len(result.sent)


def claim(ids: Sequence[int], *, now, lease_seconds: float) -> list:
    """Claim those of ``ids`` still available; return the rows this call got, oldest first."""
    owner = relay_name()
    available(now).filter(pk__in=ids).update(claimed_until=now + timedelta(seconds=lease_seconds), claimed_by=owner)
    return list(OutboxEntry.objects.filter(pk__in=ids, claimed_by=owner).order_by("id"))


def relay_name() -> str:
    """A name unique to this claim: host, pid and a random suffix (fits ``claimed_by``)."""
    return f"relay:{socket.gethostname()[:32]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
