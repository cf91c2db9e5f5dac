"""Database writes of the worker: Bitrix IDs and sync state.

Everything here uses ``QuerySet.update`` / upserts, which send no signals: the
worker's own writes never queue a new operation (no feedback loop).
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from crmbridge.models import SyncRecord
from orders.models import Order

MODELS = {"deal": Order, "contact": User}
ID_FIELDS = {"deal": "bitrix_deal_id", "contact": "bitrix_contact_id"}


def load_records(entity: str, local_ids: list[int]) -> dict[int, object]:
    """The current rows, by primary key (orders with their owner)."""
    queryset = MODELS[entity].objects.all()
    if entity == "deal":
        queryset = queryset.select_related("owner")
    return queryset.in_bulk(local_ids)


def owners_without_contact(order_ids: list[int]) -> set[int]:
    """Users owning these orders who have no Bitrix contact yet."""
    if not order_ids:
        return set()
    return set(
        Order.objects.filter(pk__in=order_ids, owner__bitrix_contact_id__isnull=True).values_list("owner_id", flat=True)
    )


def create_markers(entity: str, local_ids: list[int]) -> set[int]:
    """Records for which an earlier ``add`` may have reached Bitrix."""
    return set(
        SyncRecord.objects.filter(entity=entity, local_id__in=local_ids, create_started_at__isnull=False).values_list(
            "local_id", flat=True
        )
    )


def mark_create_started(entity: str, local_ids: list[int]) -> None:
    """Committed before the ``add`` is sent: a crash after it makes the retry look first."""
    if not local_ids:
        return
    now = timezone.now()
    SyncRecord.objects.bulk_create(
        [SyncRecord(entity=entity, local_id=i, create_started_at=now) for i in local_ids],
        update_conflicts=True,
        unique_fields=["entity", "local_id"],
        update_fields=["create_started_at"],
    )


def write_bitrix_id(entity: str, local_id: int, bitrix_id: int) -> None:
    """Store the new Bitrix ID and clear the create marker, in one transaction."""
    with transaction.atomic():
        MODELS[entity].objects.filter(pk=local_id).update(**{ID_FIELDS[entity]: bitrix_id})
        SyncRecord.objects.filter(entity=entity, local_id=local_id).update(create_started_at=None)


def mark_synced(entity: str, local_ids: list[int]) -> None:
    if not local_ids:
        return
    now = timezone.now()
    SyncRecord.objects.bulk_create(
        [SyncRecord(entity=entity, local_id=i, state=SyncRecord.State.SYNCED, last_synced_at=now) for i in local_ids],
        update_conflicts=True,
        unique_fields=["entity", "local_id"],
        update_fields=["state", "last_synced_at", "last_error"],
    )


def mark_error(entity: str, local_id: int, error: str, *, final: bool) -> None:
    """Record the last error; ``final`` (dead-lettered) turns the state to failed."""
    state = SyncRecord.State.FAILED if final else SyncRecord.State.WAITING
    SyncRecord.objects.update_or_create(
        entity=entity,
        local_id=local_id,
        defaults={"state": state, "last_error": error[:2000], "last_error_at": timezone.now()},
    )
