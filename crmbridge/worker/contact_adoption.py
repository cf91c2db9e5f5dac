"""The worker's side of existing customers: before a chunk's contacts are created, adopt what exists.

Runs after the ``ORIGIN_ID`` lookups (a contact we created before a crash is
ours, found there) and before the writes: every contact task of the chunk
still to be created is looked up in one grouped ``ContactMatcher`` call
(``crmbridge.bitrix.contact_match``; one or two requests per chunk). An
adopted contact's ID is written back at once, so a crash before the update
finds it linked; the task then becomes an update of that contact, and the
deals of the chunk reference it like any known contact.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from django.contrib.auth import get_user_model

from crmbridge import entities
from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.contact_match import ContactMatcher, Customer, Match, matching_modes
from crmbridge.bitrix.errors import BitrixError
from crmbridge.redis_io import contact_counts
from crmbridge.redis_io.connection import get_redis
from crmbridge.worker import write_back

# A ``sync_batch.RecordTask`` (not imported: sync_batch imports this module).
RecordTask = Any

logger = logging.getLogger("crmbridge.worker")


def linked_users(contact_ids: set[int]) -> dict[int, int]:
    """contact ID -> the local user already linked to it."""
    rows = get_user_model().objects.filter(bitrix_contact_id__in=contact_ids).values_list("bitrix_contact_id", "pk")
    return dict(rows)


def adopt_existing(client: BitrixClient, tasks: list[RecordTask], *, max_commands: int) -> None:
    """Adopt existing contacts for the contact tasks still to be created; a failed lookup fails those tasks."""
    creating = [t for t in tasks if t.entity == "contact" and t.creating and t.error is None]
    if not creating or not matching_modes():
        return
    matcher = ContactMatcher(client, max_commands=max_commands, linked_elsewhere=linked_users)
    try:
        matches = matcher.match([Customer.of(t.record) for t in creating])
    except BitrixError as exc:
        logger.error("[WORKER] Looking up existing contacts failed: %s", exc)
        for task in creating:
            task.error = exc  # never create without having looked: that makes the duplicate we avoid
        return
    for task in creating:
        match = matches.get(task.local_id)
        if match is not None:
            _adopt(task, match)
    count_matches(list(matches.values()))


def _adopt(task: RecordTask, match: Match) -> None:
    task.bitrix_id, task.adopted, task.existing = match.contact_id, True, match.contact
    write_back.write_bitrix_id("contact", task.local_id, match.contact_id)
    setattr(task.record, entities.CONTACT.bitrix_id_field, match.contact_id)
    others = f"; {len(match.candidates) - 1} other match(es), took the oldest" if match.ambiguous else ""
    logger.info(
        "Adopted existing Bitrix contact %s for %s (by %s%s)", match.contact_id, task.describe(), match.by, others
    )


def count_matches(matches: list[Match]) -> None:
    """Count adoptions: by e-mail, by phone, and those with several candidates."""
    changes: dict[str, int] = {}
    for match in matches:
        changes[f"adopted_{match.by}"] = changes.get(f"adopted_{match.by}", 0) + 1
        changes["ambiguous"] = changes.get("ambiguous", 0) + int(match.ambiguous)
    count_outcomes(changes)


def count_outcomes(changes: dict[str, int]) -> None:
    """Add to the shared counters; Redis trouble costs the count, never the sync."""
    try:
        contact_counts.add(get_redis(), changes)
    except redis.RedisError as exc:
        logger.warning("[WORKER] Could not count contact outcomes %s: %s", changes, exc)
