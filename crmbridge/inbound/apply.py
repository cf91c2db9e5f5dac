"""Database side of inbound events: what we know locally, and the writes of an applied event.

Every write is a ``QuerySet.update`` (or an upsert of ``SyncRecord``), which
sends no ``post_save`` signal: a change that came from Bitrix never queues an
operation back to Bitrix (no ping-pong). Each write is also conditional on the
record still being linked to the Bitrix record the event is about.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.validators import PHONE_MAX_LENGTH, PhoneValidator
from crmbridge import entities
from crmbridge.bitrix import mapping
from crmbridge.inbound.events import latest_believable
from crmbridge.models import SyncRecord

logger = logging.getLogger("crmbridge.inbound")

# A local change queued this recently and not yet synced wins over an event:
# the deal in Bitrix does not show it yet, so applying the deal would undo it.
# Past this, the outbound update is taken to be stuck and the event applies.
PENDING_LOCAL_CHANGE_SECONDS = 300


@dataclass(frozen=True)
class LocalState:
    """A local record as the processor needs it, read under the record's lock."""

    local_id: int
    bitrix_id: int | None
    sync_state: str = ""
    last_queued_at: datetime | None = None
    remote_changed_at: datetime | None = None

    def local_change_pending(self) -> bool:
        if self.sync_state != SyncRecord.State.WAITING or self.last_queued_at is None:
            return False
        return timezone.now() - self.last_queued_at < timedelta(seconds=PENDING_LOCAL_CHANGE_SECONDS)

    def is_stale(self, changed_at: datetime) -> bool:
        """Is an event of ``changed_at`` older than the last one applied?

        A remembered time beyond the allowed clock skew is not believed (see
        ``events.latest_believable``): it orders nothing.
        """
        seen = self.remote_changed_at
        if seen is None or seen > latest_believable(timezone.now()):
            return False
        return changed_at < seen


def linked_records(entity: str, bitrix_ids: list[int]) -> dict[int, int]:
    """Bitrix ID -> local ID of the records linked to these Bitrix records."""
    if not bitrix_ids:
        return {}
    field = entities.get(entity).bitrix_id_field
    rows = entities.get(entity).model().objects.filter(**{f"{field}__in": bitrix_ids}).values_list(field, "pk")
    return dict(rows)


def local_id_from_origin(entity: str, remote: dict) -> int | None:
    """The local ID named by a Bitrix record's ``ORIGIN_ID`` when this system created it."""
    originator = str(remote.get("ORIGINATOR_ID") or "")
    origin = str(remote.get("ORIGIN_ID") or "")
    if originator != settings.BITRIX_ORIGINATOR_ID or "-" not in origin:
        return None
    local_id = entities.parse_record_id(origin.rsplit("-", 1)[1])
    return local_id if local_id is not None and mapping.origin_id(entity, local_id) == origin else None


def local_states(entity: str, local_ids: list[int]) -> dict[int, LocalState]:
    """The records that still exist, with their sync record (two queries)."""
    field = entities.get(entity).bitrix_id_field
    rows = dict(entities.get(entity).model().objects.filter(pk__in=local_ids).values_list("pk", field))
    syncs = SyncRecord.objects.filter(entity=entity, local_id__in=rows).values(
        "local_id", "state", "last_queued_at", "remote_changed_at"
    )
    by_id = {s["local_id"]: s for s in syncs}
    states = {}
    for local_id, bitrix_id in rows.items():
        sync = by_id.get(local_id, {})
        states[local_id] = LocalState(
            local_id=local_id,
            bitrix_id=bitrix_id,
            sync_state=sync.get("state", ""),
            last_queued_at=sync.get("last_queued_at"),
            remote_changed_at=sync.get("remote_changed_at"),
        )
    return states


def note_remote_change(entity: str, local_id: int, changed_at: datetime | None, **sync_fields) -> None:
    """Remember the time of the applied event (it orders later ones)."""
    SyncRecord.objects.update_or_create(
        entity=entity,
        local_id=local_id,
        defaults={"remote_changed_at": changed_at, **sync_fields},
        # A new sync record must not say "waiting": nothing is queued for it.
        create_defaults={"remote_changed_at": changed_at, "state": SyncRecord.State.SYNCED, **sync_fields},
    )


def apply_deal(order_id: int, deal_id: int, deal: dict, changed_at: datetime | None) -> str:
    """Set the order's status from the deal's stage; returns what happened, for the log."""
    stage = str(deal.get("STAGE_ID") or "")
    status = mapping.status_for_stage(stage)
    with transaction.atomic():
        if status is None:
            logger.warning(
                "[WEBHOOK] Deal %s is at stage %r, which BITRIX_STAGE_MAP does not map to an order status; "
                "order %s keeps its status",
                deal_id, stage, order_id,
            )  # fmt: skip
            changed = 0
        else:
            changed = (
                entities.DEAL.model()
                .objects.filter(pk=order_id, bitrix_deal_id=deal_id)
                .exclude(status=status)
                .update(status=status, updated_at=timezone.now())
            )
        note_remote_change("deal", order_id, changed_at)
    if status is None:
        return f"unknown stage {stage!r}, status unchanged"
    return f"status set to {status!r} (stage {stage})" if changed else f"status already {status!r} (stage {stage})"


def apply_contact(user_id: int, contact_id: int, contact: dict, changed_at: datetime | None) -> str:
    """Copy the contact's name and phone to the user (``BITRIX_INBOUND_CONTACT_UPDATES``)."""
    values = {
        "first_name": str(contact.get("NAME") or "")[:150],
        "last_name": str(contact.get("LAST_NAME") or "")[:150],
    }
    phone = first_phone(contact)
    if phone is not None:
        values["phone"] = phone
    with transaction.atomic():
        changed = entities.CONTACT.model().objects.filter(pk=user_id, bitrix_contact_id=contact_id).update(**values)
        note_remote_change("contact", user_id, changed_at)
    return f"name and phone copied ({', '.join(values)})" if changed else "user no longer linked"


def first_phone(contact: dict) -> str | None:
    """The contact's first phone if our validator accepts it; None keeps the user's phone."""
    entries = contact.get("PHONE")
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
        return None
    value = str(entries[0].get("VALUE") or "").strip()
    try:
        if len(value) > PHONE_MAX_LENGTH:
            raise ValidationError("too long")
        PhoneValidator()(value)
    except ValidationError:
        logger.warning("[WEBHOOK] Contact phone %r is not a valid phone here; the user's phone is kept", value[:40])
        return None
    return value


def unlink(entity: str, local_id: int, bitrix_id: int, changed_at: datetime | None) -> bool:
    """The Bitrix record was deleted: forget its ID and say so in the sync record.

    Nothing is re-created here: an operator deleted it on purpose, perhaps.
    The next change of the local record (or ``bitrix_resync``) creates a new one.
    """
    when = (changed_at or timezone.now()).isoformat()
    note = f"{entity} {bitrix_id} deleted in Bitrix at {when}; unlinked, not re-created"
    with transaction.atomic():
        field = entities.get(entity).bitrix_id_field
        changed = entities.get(entity).model().objects.filter(pk=local_id, **{field: bitrix_id}).update(**{field: None})
        if changed:
            sync = {"state": SyncRecord.State.FAILED, "last_error": note, "last_error_at": timezone.now()}
            note_remote_change(entity, local_id, changed_at, **sync)
    return bool(changed)
