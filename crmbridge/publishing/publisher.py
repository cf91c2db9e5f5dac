"""Queue deal and contact operations: outbox row with the change, stream entry after commit.

Each ``queue_*`` function is called inside the caller's transaction (the
signal handlers in ``crmbridge.publishing.signals`` call them on every relevant save). It
writes an ``OutboxEntry`` and marks the ``SyncRecord`` "waiting" - both commit
or roll back with the caller's change - and registers an on-commit hook that
adds the entry to ``{prefix}operations`` (and deletes the row, see
``crmbridge.publishing.outbox``). A rolled-back transaction publishes nothing.

When the hook runs: outside a web request (commands, the shell, tests), at
commit, and the function returns the stream message ID when no transaction
was open. Inside a request, the entries committed by it are published when
the response has been sent (``request_finished``): the client never waits for
the Redis round trip, nor for a slow or unreachable Redis. Then, and when left
in the outbox, the function returns ``None``.

Redis down or slow: the publishing client has short timeouts and no retries,
and a circuit breaker stops trying for ``BITRIX_PUBLISH_BREAKER_SECONDS``
after a failure, so a burst of requests does not each wait the timeout. Their
entries wait in the outbox for ``crmbridge.publishing.outbox.relay_outbox``.
``BITRIX_ENABLED=false`` queues nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import transaction

from crmbridge import entities
from crmbridge.models import OutboxEntry
from crmbridge.publishing.messages import OPERATIONS, Operation
from crmbridge.publishing.outbox import Sent, describe_error, publish_entries, release, write_entries
from crmbridge.redis_io.connection import get_redis, reset_clients

logger = logging.getLogger(__name__)

# A row written by a request is claimed by it this long, so the relay does not
# race the on-commit publisher; if the process dies, the relay takes it after.
DIRECT_LEASE_SECONDS = 10.0


@dataclass(frozen=True)
class Kind:
    tag: str  # log prefix, e.g. QUEUE_DEAL
    what: str  # "deal creation"
    local_name: str  # "order"

    @classmethod
    def of(cls, entity: str, op: str) -> Kind:
        """The spec's log tags: ``QUEUE_DEAL``, ``QUEUE_DEAL_UPDATE``, ``QUEUE_CONTACT``, ``QUEUE_CONTACT_UPDATE``."""
        suffix = "_UPDATE" if op == "update" else ""
        what = "creation" if op == "create" else "update"
        return cls(f"QUEUE_{entity.upper()}{suffix}", f"{entity} {what}", entities.get(entity).local_name)


KINDS = {(entity, op): Kind.of(entity, op) for entity in entities.NAMES for op in OPERATIONS}


def queue_deal_creation(order_id: int) -> str | None:
    """Queue the creation of the deal for a new order."""
    return queue_operation("deal", "create", order_id)


def queue_deal_update(order_id: int) -> str | None:
    """Queue an update of the order's deal (a field in ``Order.BITRIX_FIELDS`` changed)."""
    return queue_operation("deal", "update", order_id)


def queue_contact_creation(user_id: int) -> str | None:
    """Queue the creation of the contact for a new user."""
    return queue_operation("contact", "create", user_id)


def queue_contact_update(user_id: int) -> str | None:
    """Queue an update of the user's contact (a field in ``User.BITRIX_FIELDS`` changed)."""
    return queue_operation("contact", "update", user_id)


def queue_operation(entity: str, op: str, local_id: int, *, src: str = "signal") -> str | None:
    """Write the outbox row now and publish it after commit; see the module docstring."""
    if not settings.BITRIX_ENABLED:
        return None
    operation = Operation(entity=entity, op=op, local_id=int(local_id), src=src)
    with transaction.atomic(savepoint=False):
        (entry,) = write_entries([operation], claimed_by=publisher_name(), lease_seconds=direct_lease())
    message_ids: list[str] = []
    # With no transaction open, this runs at once and the message ID is known.
    transaction.on_commit(lambda: message_ids.extend(_after_commit(entry, KINDS[entity, op])), robust=True)
    return message_ids[0] if message_ids else None


def _after_commit(entry: OutboxEntry, kind: Kind) -> list[str]:
    waiting = getattr(_request, "committed", None)
    if waiting is not None:  # inside a request: after the response
        waiting.append((entry, kind))
        return []
    return publish_queued([(entry, kind)])


def publish_queued(queued: Sequence[tuple[OutboxEntry, Kind]]) -> list[str]:
    """Publish committed entries, log the line of each, return the message IDs of those sent."""
    sent = {item.entry_id: item.message_id for item in publish_now([entry for entry, _kind in queued])}
    for entry, kind in queued:
        local_id = entry.fields["id"]
        if entry.pk in sent:
            logger.info(
                "[%s] Queued %s for %s %s (message_id: %s)",
                kind.tag,
                kind.what,
                kind.local_name,
                local_id,
                sent[entry.pk],
            )
        else:
            logger.info(
                "[%s] Redis unavailable; %s for %s %s kept in outbox (entry %d)",
                kind.tag,
                kind.what,
                kind.local_name,
                local_id,
                entry.pk,
            )
    return list(sent.values())


def publish_now(entries: Sequence[OutboxEntry], *, log_level: int = logging.INFO) -> list[Sent]:
    """Publish committed entries with the short-timeout client unless the breaker is open.

    Returns what was sent; entries not sent stay in the outbox (released for
    the relay if this call tried and failed). Never raises a Redis error.
    """
    if not entries or not breaker.allow():
        return []
    try:
        result = publish_entries(publish_client(), entries, log_level=log_level, defer_delete=True)
    except redis.RedisError as exc:
        breaker.record_failure(exc)
        release([entry.pk for entry in entries], describe_error(exc))
        return []
    breaker.record_success()
    return result.sent


# --- after the response ------------------------------------------------------------
# ``committed`` exists (a list) only while this thread serves a request.

_request = threading.local()


def begin_request(**kwargs) -> None:
    """``request_started``: collect this request's committed entries until it is answered."""
    leftover = getattr(_request, "committed", None)
    _request.committed = []
    if leftover:  # the last request never finished (a server that skipped close()): send them now
        _publish_safely(leftover)


def publish_after_response(**kwargs) -> None:
    """``request_finished`` (the response has been sent): publish what the request committed."""
    committed, _request.committed = getattr(_request, "committed", None), None
    if committed:
        _publish_safely(committed)


def _publish_safely(queued: Sequence[tuple[OutboxEntry, Kind]]) -> None:
    # An exception here would reach the web server after the response: log it,
    # the rows stay in the outbox for the relay.
    try:
        publish_queued(queued)
    except Exception:
        logger.exception("[QUEUE] Publishing %d committed operations failed; the relay will send them", len(queued))


def direct_lease() -> float:
    """Claim new rows for this process only while it will really try to publish them."""
    return 0.0 if breaker.is_open() else DIRECT_LEASE_SECONDS


def publisher_name() -> str:
    return f"publisher:{socket.gethostname()[:40]}-{os.getpid()}"


# --- the publishing Redis client -------------------------------------------


def publish_timeout() -> float:
    """``REDIS_PUBLISH_TIMEOUT`` (connect and read), at most ``REDIS_SOCKET_TIMEOUT``; 0.5 s by default."""
    return min(settings.REDIS_PUBLISH_TIMEOUT, settings.REDIS_SOCKET_TIMEOUT)


def publish_client() -> redis.Redis:
    """A client whose every call gives up within ``publish_timeout()``: no retries, short connect."""
    timeout = publish_timeout()
    return get_redis(socket_timeout=timeout, connect_timeout=timeout, retries=False, name="bitrixsync-publisher")


def reset_publish_clients() -> None:
    """Close cached clients and close the breaker (tests; a settings change)."""
    reset_clients()
    breaker.reset()


# --- the circuit breaker -------------------------------------------------------


class CircuitBreaker:
    """Per process: after a failure, skip direct publishing for a cool-down.

    Closed: everyone publishes. Open: nobody does until the cool-down ends;
    then one caller probes (the others keep skipping) and its result closes
    the breaker or opens it for another cool-down. The WARNING is logged when
    an outage starts and an INFO when it ends, not per request.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = False
        self._retry_at = 0.0

    def cooldown(self) -> float:
        return settings.BITRIX_PUBLISH_BREAKER_SECONDS

    def is_open(self) -> bool:
        return self._open

    def allow(self) -> bool:
        with self._lock:
            if not self._open:
                return True
            now = time.monotonic()
            if now < self._retry_at:
                return False
            self._retry_at = now + self.cooldown()  # this caller is the probe
            return True

    def record_failure(self, exc: BaseException) -> None:
        with self._lock:
            was_open, self._open = self._open, True
            self._retry_at = time.monotonic() + self.cooldown()
        if not was_open:
            logger.warning(
                "[QUEUE] Redis unavailable (%s); publishing after commit paused for %.0f s, "
                "operations stay in the outbox for the relay",
                describe_error(exc),
                self.cooldown(),
            )

    def record_success(self) -> None:
        with self._lock:
            was_open, self._open = self._open, False
        if was_open:
            logger.info("[QUEUE] Redis reachable again; publishing after commit resumed")

    def reset(self) -> None:
        with self._lock:
            self._open, self._retry_at = False, 0.0


breaker = CircuitBreaker()
