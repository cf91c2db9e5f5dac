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

import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import redis
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured

from crmbridge import entities
from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.contact_match import ContactMatcher, Customer, Match, findbycomm_problem, matching_modes
from crmbridge.bitrix.errors import BitrixError
from crmbridge.redis_io import contact_counts, contact_lookups
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
    looked_up = _looked_up_by_resync([t.local_id for t in creating])
    creating = [t for t in creating if t.local_id not in looked_up]
    if not creating:
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


def _looked_up_by_resync(user_ids: list[int]) -> set[int]:
    """Users ``bitrix_resync`` looked up without a match just now (``contact_lookups``)."""
    try:
        return contact_lookups.take_recent_no_match(get_redis(), user_ids)
    except redis.RedisError:
        return set()  # look them up again: a request more, never a duplicate


def _adopt(task: RecordTask, match: Match) -> None:
    task.bitrix_id, task.adopted, task.existing = match.contact_id, True, match.contact
    write_back.write_bitrix_id("contact", task.local_id, match.contact_id)
    setattr(task.record, entities.CONTACT.bitrix_id_field, match.contact_id)
    others = f"; {len(match.candidates) - 1} other match(es), took the oldest" if match.ambiguous else ""
    logger.info(
        "Adopted existing Bitrix contact %s for %s (by %s%s)", match.contact_id, task.describe(), match.by, others
    )


def _note_no_match(user_ids: list[int]) -> None:
    try:
        contact_lookups.remember_no_match(get_redis(), user_ids)
    except redis.RedisError as exc:
        logger.warning("Could not note the users without an existing customer (the worker looks again): %s", exc)


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


def check_lookup_allowed(client: BitrixClient) -> str | None:
    """At start: one line naming ``BITRIX_CONTACT_MATCH`` and the fix when the webhook may not look up contacts.

    Only logged: the first lookup that the portal refuses pauses the worker with the same line.
    """
    problem = findbycomm_problem(client)
    if problem:
        logger.error("[WORKER] %s", problem)
    return problem


def start_lookup_check(name: str) -> threading.Thread | None:
    """``check_lookup_allowed`` in a thread of its own, with its own client.

    A slow or unreachable portal must not hold the worker's loop at start: the
    loop takes over a dead worker's messages within three heartbeats.
    """
    if not matching_modes():
        return None
    try:
        client = BitrixClient.from_settings()
    except ImproperlyConfigured:
        return None  # the first chunk pauses the worker with the reason

    def run() -> None:
        try:
            check_lookup_allowed(client)
        except Exception:  # a check must never take the worker down
            logger.exception("[WORKER] Could not check whether the webhook may look up contacts")
        finally:
            client.close()

    thread = threading.Thread(target=run, name=f"{name}-lookup-check", daemon=True)
    thread.start()
    return thread


# -- backfill (``bitrix_resync``) ------------------------------------------------------------------
BACKFILL_GROUP = 500  # users per lookup: 2 x 25 findbycomm commands, one batch request


@dataclass
class Planned:
    """What the backfill did (or, dry, would do) for one user: adopt ``match`` or leave it to be created."""

    user: Any
    match: Match | None

    def describe(self, *, dry_run: bool) -> str:
        who = f"user {self.user.pk} {self.user.email or self.user.phone or '(no e-mail or phone)'}"
        if self.match is None:
            return f"{who} -> {'would create' if dry_run else 'will create'} a contact (no existing customer)"
        by = {"email": "by e-mail", "phone": "by phone"}[self.match.by]
        more = f", oldest of {len(self.match.candidates)}" if self.match.ambiguous else ""
        verb = "would adopt" if dry_run else "adopted"
        return f"{who} -> {verb} contact {self.match.contact_id} ({by}{more})"


def backfill(
    client: BitrixClient,
    users: Iterable[Any],
    *,
    dry_run: bool,
    group: int = BACKFILL_GROUP,
    on_progress: Callable[[int], object] | None = None,
) -> Iterator[Planned]:
    """Match users without a contact against the portal's, ``group`` users per lookup (one or two requests).

    Not dry: an adopted contact's ID is written back and counted, so the resync
    queues an update for that user (the worker then adds only what the contact
    lacks). Users without a match are left to the worker's create, which looks
    them up once more (one grouped request per chunk): a customer the sales team
    entered meanwhile is still found. Raises ``BitrixError``.
    """
    claimed: set[int] = set()  # across groups, as within one: one contact, one user

    def linked(ids: set[int]) -> dict[int, int]:
        return {**linked_users(ids), **dict.fromkeys(ids & claimed, -1)}

    matcher = ContactMatcher(client, linked_elsewhere=linked)
    remaining = iter(users)
    while chunk := list(itertools.islice(remaining, group)):
        matches = matcher.match([Customer.of(user) for user in chunk])
        claimed.update(m.contact_id for m in matches.values())
        if not dry_run:
            for user_id, match in matches.items():
                write_back.write_bitrix_id("contact", user_id, match.contact_id)
            count_matches(list(matches.values()))
            _note_no_match([user.pk for user in chunk if user.pk not in matches])
        for user in chunk:
            yield Planned(user, matches.get(user.pk))
        if on_progress is not None:
            on_progress(len(chunk))
