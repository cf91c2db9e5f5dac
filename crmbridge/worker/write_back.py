"""Database writes of the worker: Bitrix IDs and sync state.

Everything here uses ``QuerySet.update`` / upserts, which send no signals: the
worker's own writes never queue a new operation (no feedback loop).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from crmbridge import entities
from crmbridge.models import SyncRecord
from orders.models import Order


def load_records(entity: str, local_ids: list[int]) -> dict[int, object]:
    """The current rows, by primary key (orders with their owner)."""
    queryset = entities.get(entity).model().objects.all()
    if entity == "deal":
        queryset = queryset.select_related("owner")
    return queryset.in_bulk(local_ids)


def owners_without_contact(order_ids: list[int]) -> set[int]:
    """Users owning these orders who have no Bitrix contact yet."""
    if not order_ids:
        return set()
    # Two lookups by primary key, not one join: SQLite's planner (no statistics) walked the
    # index of users without a contact -- every user of a new shop -- for each chunk, which
    # was a third of the worker's CPU in the 20/s throughput benchmark.
    owner_ids = set(Order.objects.filter(pk__in=order_ids).order_by().values_list("owner_id", flat=True))
    users = get_user_model().objects.filter(pk__in=owner_ids, bitrix_contact_id__isnull=True)
    return set(users.order_by().values_list("pk", flat=True))


def create_markers(entity: str, local_ids: list[int]) -> set[int]:
    """Records for which an earlier ``add`` may have reached Bitrix."""
    return set(
        SyncRecord.objects.filter(entity=entity, local_id__in=local_ids, create_started_at__isnull=False).values_list(
            "local_id", flat=True
        )
    )


def mark_create_started(records: list[tuple[str, int]]) -> None:
    """Committed before the ``add`` is sent: a crash after it makes the retry look first."""
    if not records:
        return
    now = timezone.now()
    SyncRecord.objects.bulk_create(
        [SyncRecord(entity=entity, local_id=i, create_started_at=now) for entity, i in records],
        update_conflicts=True,
        unique_fields=["entity", "local_id"],
        update_fields=["create_started_at"],
    )


def write_bitrix_id(entity: str, local_id: int, bitrix_id: int) -> None:
    """Store the new Bitrix ID and clear the create marker, in one transaction."""
    with transaction.atomic():
        record = entities.get(entity)
        record.model().objects.filter(pk=local_id).update(**{record.bitrix_id_field: bitrix_id})
        SyncRecord.objects.filter(entity=entity, local_id=local_id).update(create_started_at=None)


def record_success(
    *,
    created: list[tuple[str, int, int]],
    synced: list[tuple[str, int]],
    deal_state: list[tuple[int, str | None, int | None]] = (),
) -> None:
    """After a batch: the new IDs and the synced state, in ONE transaction.

    One commit per batch instead of one per record: on SQLite each commit is a
    disk sync, and per-record commits capped the worker at ~150 operations/s.
    A created record that is not in ``synced`` (a deal saved without its
    contact) keeps its ID and stays ``waiting``. ``deal_state``: ``(order id,
    rows fingerprint, pipeline)`` as the portal now has them (``None``: unchanged).
    """
    now = timezone.now()
    done = set(synced)
    records = [
        SyncRecord(entity=e, local_id=i, state=SyncRecord.State.SYNCED, last_synced_at=now) for e, i in sorted(done)
    ]
    records += [SyncRecord(entity=e, local_id=i) for e, i, _ in created if (e, i) not in done]
    with transaction.atomic():
        for entity in entities.ENTITIES.values():
            ids = [(bitrix_id, i) for e, i, bitrix_id in created if e == entity.name]
            _set_ids(entity.model(), entity.bitrix_id_field, ids)
        _set_deal_state(deal_state)
        SyncRecord.objects.bulk_create(
            records,
            update_conflicts=True,
            unique_fields=["entity", "local_id"],
            update_fields=["state", "last_synced_at", "last_error", "create_started_at"],
        )


def _set_ids(model, field: str, rows: list[tuple[int, int]]) -> None:
    """``UPDATE ... SET <field> = %s WHERE id = %s`` for many rows in one ``executemany``.

    ``bulk_update`` builds a CASE expression per row and cost more than the
    Bitrix request itself for a batch of 50; ``QuerySet.update`` per row would
    be 50 statements. Neither sends signals, nor does this.
    """
    if not rows:
        return
    table = connection.ops.quote_name(model._meta.db_table)
    column = connection.ops.quote_name(model._meta.get_field(field).column)
    pk = connection.ops.quote_name(model._meta.pk.column)
    with connection.cursor() as cursor:
        cursor.executemany(f"UPDATE {table} SET {column} = %s WHERE {pk} = %s", rows)


def _set_deal_state(rows: list[tuple[int, str | None, int | None]]) -> None:
    """What the portal's deals now show: rows fingerprint and pipeline, for many orders in one ``executemany``."""
    if not rows:
        return
    table = connection.ops.quote_name(Order._meta.db_table)
    rows_hash = connection.ops.quote_name(Order._meta.get_field("bitrix_rows_hash").column)
    category = connection.ops.quote_name(Order._meta.get_field("bitrix_category_id").column)
    pk = connection.ops.quote_name(Order._meta.pk.column)
    sql = (
        f"UPDATE {table} SET {rows_hash} = COALESCE(%s, {rows_hash}), {category} = COALESCE(%s, {category}) "
        f"WHERE {pk} = %s"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, [(digest, category_id, order_id) for order_id, digest, category_id in rows])


def mark_error(entity: str, local_id: int, error: str, *, final: bool) -> None:
    """Record the last error; ``final`` (dead-lettered) turns the state to failed."""
    state = SyncRecord.State.FAILED if final else SyncRecord.State.WAITING
    SyncRecord.objects.update_or_create(
        entity=entity,
        local_id=local_id,
        defaults={"state": state, "last_error": error[:2000], "last_error_at": timezone.now()},
    )
