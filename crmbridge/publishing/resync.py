"""Queue operations for records that signals never saw (bulk updates, imports, old data).

``resync`` walks orders and/or users in primary-key chunks; per chunk it
inserts the outbox rows and marks the records waiting in one transaction, then
publishes the chunk. A record without a Bitrix ID gets ``create``, one with an
ID gets ``update``. Running it again is safe: the worker syncs each record's
current state, so a second message for a record only repeats an update, and a
``create`` for a record that got its ID meanwhile is turned into an update by
the worker (it looks up the ORIGIN_ID before adding).

If Redis is unreachable the rows stay in the outbox for the relay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, time

from django.db import models, transaction
from django.utils import timezone

from crmbridge.entities import NAMES as ENTITIES
from crmbridge.entities import get as get_entity
from crmbridge.publishing.messages import Operation
from crmbridge.publishing.outbox import delete_sent_rows, write_entries
from crmbridge.publishing.publisher import direct_lease, publish_now, publisher_name


def selection(entity: str, *, missing_only: bool = False, since: date | datetime | None = None) -> models.QuerySet:
    """The records of ``entity`` a resync with these options covers."""
    source = get_entity(entity)
    queryset = source.model().objects.all()
    if missing_only:
        queryset = queryset.filter(**{f"{source.bitrix_id_field}__isnull": True})
    if since is not None:
        queryset = queryset.filter(**{f"{source.since_field}__gte": _aware(since)})
    return queryset


def resync_plan(
    *, entities: Sequence[str] = ENTITIES, missing_only: bool = False, since: date | datetime | None = None
) -> dict[str, dict[str, int]]:
    """How many ``create`` and ``update`` operations a resync would queue, per entity (for --dry-run)."""
    plan = {}
    for entity in entities:
        queryset = selection(entity, missing_only=missing_only, since=since)
        creates = queryset.filter(**{f"{get_entity(entity).bitrix_id_field}__isnull": True}).count()
        plan[entity] = {"create": creates, "update": queryset.count() - creates}
    return plan


def resync(
    *,
    entities: Sequence[str] = ENTITIES,
    missing_only: bool = False,
    since: date | datetime | None = None,
    chunk_size: int = 500,
    src: str = "resync",
    on_progress: Callable[[int], object] | None = None,
) -> int:
    """Queue an operation for every selected record; return how many were queued.

    ``on_progress(n)`` is called after each chunk (a tqdm bar's ``update``).
    """
    queued = 0
    for entity in entities:
        for rows in _chunks(selection(entity, missing_only=missing_only, since=since), entity, chunk_size):
            queued += _queue_rows(entity, rows, src=src)
            if on_progress is not None:
                on_progress(len(rows))
    delete_sent_rows()  # the last chunk's rows: no later write will take them along
    return queued


def queue_resync_for(entity: str, ids: Iterable[int], *, src: str = "admin") -> int:
    """Queue create/update operations for these records of ``entity`` (the admin's "resync selected").

    Runs in (or as) one transaction; the entries are published after commit.
    Unknown IDs are skipped. Returns how many operations were queued.
    """
    source = get_entity(entity)
    rows = list(
        source.model().objects.filter(pk__in=list(ids)).order_by("pk").values_list("pk", source.bitrix_id_field)
    )
    return _queue_rows(entity, rows, src=src)


def _queue_rows(entity: str, rows: Sequence[tuple[int, int | None]], *, src: str) -> int:
    """Outbox rows and waiting marks for one chunk in one transaction; publish after commit."""
    operations = [
        Operation(entity=entity, op="update" if bitrix_id else "create", local_id=pk, src=src) for pk, bitrix_id in rows
    ]
    if not operations:
        return 0
    with transaction.atomic():
        entries = write_entries(operations, claimed_by=publisher_name(), lease_seconds=direct_lease())
        transaction.on_commit(lambda: publish_now(entries, log_level=logging.DEBUG), robust=True)
    return len(operations)


def _chunks(queryset: models.QuerySet, entity: str, size: int):
    """(pk, Bitrix ID) rows in ascending chunks, paging by key: no OFFSET, stable while rows are added."""
    last = None
    while True:
        page = queryset.order_by("pk")
        if last is not None:
            page = page.filter(pk__gt=last)
        rows = list(page.values_list("pk", get_entity(entity).bitrix_id_field)[:size])
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def _aware(value: date | datetime) -> datetime:
    if not isinstance(value, datetime):
        value = datetime.combine(value, time.min)
    return timezone.make_aware(value) if timezone.is_naive(value) else value
