"""The worker's side of inbound events: a chunk of ``{prefix}webhooks`` messages -> outcomes.

The path of a chunk:

1. parse; an invalid message is a dead letter (``invalid_message``);
2. coalesce by Bitrix record: several events for one deal cost one fetch;
3. find the local record: the one linked to the Bitrix ID, else the one the
   Bitrix record's ``ORIGIN_ID`` names (fetched); records that are not ours
   are acknowledged and ignored;
4. lock the local records with the outbound sync's locks, so that an event and
   an operation for one order never interleave; a record locked elsewhere waits;
5. under the lock, read the local state again. A local change queued but not
   yet in Bitrix makes the event wait: the deal does not show that change yet,
   and applying it would undo the change. An event older than the last one
   applied, or about a record no longer linked to that Bitrix record, changes
   nothing;
6. fetch the current records (``batch``) and apply them: the deal's stage
   becomes the order's status; a deleted deal unlinks the order.

Because the *current* record is fetched each time, late and repeated events
are harmless. Writes send no signals (``crmbridge.inbound.apply``): nothing
goes back to Bitrix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from crmbridge import entities
from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.errors import BitrixError, ErrorKind
from crmbridge.inbound import apply
from crmbridge.inbound.events import InboundEvent, InvalidEvent, latest_believable
from crmbridge.worker.dead_letters import DeadLetter
from crmbridge.worker.outcome import ChunkOutcome
from crmbridge.worker.record_locks import RecordLocks
from crmbridge.worker.stream_consumer import StreamMessage

logger = logging.getLogger("crmbridge.inbound")

MAX_COMMANDS = 50
APPLY = {"deal": apply.apply_deal, "contact": apply.apply_contact}


@dataclass(eq=False)  # identity: tasks are dict keys
class EventTask:
    """All events of one chunk about one Bitrix record."""

    entity: str
    bitrix_id: int
    messages: list[StreamMessage] = field(default_factory=list)
    events: list[InboundEvent] = field(default_factory=list)
    local_id: int | None = None
    state: apply.LocalState | None = None

    @property
    def changed_at(self) -> datetime:
        return max(event.changed_at for event in self.events)

    @property
    def applied_at(self) -> datetime | None:
        """What ``remote_changed_at`` becomes: never earlier than it was, except to reset it.

        A pull (``bitrix_pull_deals``) resets the ordering state (None: the next portal
        event applies whatever its ``ts``; the pull carries our clock, not the portal's),
        and a remembered time beyond the allowed clock skew (left by an older version)
        is dropped: either would otherwise keep hiding later events.
        """
        if self.pulled:
            return None
        seen = self.state.remote_changed_at if self.state else None
        if seen and seen > latest_believable(timezone.now()):
            return self.changed_at
        return max(self.changed_at, seen) if seen else self.changed_at

    @property
    def pulled(self) -> bool:
        """Queued by ``bitrix_pull_deals``: apply the current record whatever the times say."""
        return any(event.src == "pull" for event in self.events)

    @property
    def lock_key(self) -> tuple[str, int]:
        return (self.entity, self.local_id)

    @property
    def command_key(self) -> str:
        return f"{self.entity[0]}{self.bitrix_id}"

    def describe(self) -> str:
        local = f" ({entities.get(self.entity).local_name} {self.local_id})" if self.local_id else ""
        return f"{self.entity} {self.bitrix_id}{local}"


def is_not_found(error: BitrixError) -> bool:
    """Bitrix's answer for a missing record: empty code, "Not found" / "Contact is not found"."""
    return error.kind is ErrorKind.PERMANENT and "not found" in error.description.lower()


class InboundBatch:
    """Processes one chunk. Stateless between chunks; the runner owns retries."""

    def __init__(self, client: BitrixClient, locks: RecordLocks, *, consumer: str) -> None:
        self.client = client
        self.locks = locks
        self.consumer = consumer

    def process(self, messages: list[StreamMessage]) -> ChunkOutcome:
        outcome = ChunkOutcome()
        tasks = self._find_local(self._coalesce(messages, outcome), outcome)
        locked = self.locks.acquire(sorted({task.lock_key for task in tasks}))
        try:
            ready = self._check_under_lock(tasks, locked, outcome)
            self._fetch_and_apply(ready, outcome)
        finally:
            self.locks.release(locked)
        return outcome

    # -- 1-3: parse, coalesce, find the local record -------------------------
    def _coalesce(self, messages: list[StreamMessage], outcome: ChunkOutcome) -> list[EventTask]:
        tasks: dict[tuple[str, int], EventTask] = {}
        for message in messages:
            try:
                event = InboundEvent.from_fields(message.fields)
            except InvalidEvent as exc:
                logger.error("[WEBHOOK] Invalid message %s: %s", message.id, exc.detail)
                outcome.dead.append((message, self._letter(message, "invalid_message", "", exc.detail)))
                continue
            if event.entity == "contact" and not settings.BITRIX_INBOUND_CONTACT_UPDATES:
                logger.debug("[WEBHOOK] Ignored %s: BITRIX_INBOUND_CONTACT_UPDATES is off", event.describe())
                outcome.done.append(message)
                continue
            logger.info(
                "[WEBHOOK] Processing %s (ts: %s, retry: %s, message_id: %s)",
                event.describe(), event.ts.isoformat() if event.ts else "none", message.retry, message.id,
            )  # fmt: skip
            task = tasks.setdefault((event.entity, event.bitrix_id), EventTask(event.entity, event.bitrix_id))
            task.messages.append(message)
            task.events.append(event)
        return list(tasks.values())

    def _find_local(self, tasks: list[EventTask], outcome: ChunkOutcome) -> list[EventTask]:
        """Set each task's local record; acknowledge the tasks about records that are not ours."""
        for entity in {task.entity for task in tasks}:
            linked = apply.linked_records(entity, [t.bitrix_id for t in tasks if t.entity == entity])
            for task in tasks:
                if task.entity == entity:
                    task.local_id = linked.get(task.bitrix_id)
        unlinked = [task for task in tasks if task.local_id is None]
        for task, remote in self._fetch(unlinked).items():
            task.local_id = self._origin_of(task, remote, outcome)
        return [task for task in tasks if task.local_id is not None]

    def _origin_of(self, task: EventTask, remote: dict | BitrixError, outcome: ChunkOutcome) -> int | None:
        if isinstance(remote, BitrixError):
            if is_not_found(remote):
                self._ignore(task, "no local record is linked to it and it no longer exists in Bitrix", outcome)
            else:
                self._failed(task, remote, outcome)
            return None
        local_id = apply.local_id_from_origin(task.entity, remote)
        if local_id is None:
            self._ignore(task, "not created by this system (no ORIGIN_ID of ours, no linked record)", outcome)
        return local_id

    # -- 4-5: under the lock ----------------------------------------------------
    def _check_under_lock(self, tasks: list[EventTask], locked: set, outcome: ChunkOutcome) -> list[EventTask]:
        ready = []
        for task in [t for t in tasks if t.lock_key not in locked]:
            logger.debug("[WEBHOOK] %s is locked by another worker; %s waits", task.describe(), task.events[0].event)
            outcome.deferred.extend(task.messages)
        tasks = [t for t in tasks if t.lock_key in locked]
        for entity in {task.entity for task in tasks}:
            states = apply.local_states(entity, [t.local_id for t in tasks if t.entity == entity])
            for task in [t for t in tasks if t.entity == entity]:
                task.state = states.get(task.local_id)
                if self._should_apply(task, outcome):
                    ready.append(task)
        return ready

    def _should_apply(self, task: EventTask, outcome: ChunkOutcome) -> bool:
        state, local = task.state, entities.get(task.entity).local_name
        if state is None:
            self._ignore(task, f"{local} {task.local_id} no longer exists here", outcome)
        elif state.local_change_pending():
            logger.debug("[WEBHOOK] %s has a local change not yet in Bitrix; the event waits", task.describe())
            outcome.deferred.extend(task.messages)
        elif state.bitrix_id != task.bitrix_id:
            linked = f"linked to {task.entity} {state.bitrix_id}" if state.bitrix_id else "not linked"
            self._ignore(task, f"{local} {task.local_id} is {linked} (a duplicate or an old record)", outcome)
        elif state.is_stale(task.changed_at) and not task.pulled:
            seen = state.remote_changed_at.isoformat()
            self._ignore(task, f"the event is older than the last change applied ({seen})", outcome, level=logging.INFO)
        else:
            return True
        return False

    # -- 6: fetch and apply -------------------------------------------------------
    def _fetch_and_apply(self, tasks: list[EventTask], outcome: ChunkOutcome) -> None:
        for task, remote in self._fetch(tasks).items():
            if isinstance(remote, dict):
                self._apply(task, remote, outcome)
            elif is_not_found(remote):
                self._gone(task, outcome)
            else:
                self._failed(task, remote, outcome)

    def _apply(self, task: EventTask, remote: dict, outcome: ChunkOutcome) -> None:
        if any(event.kind.action == "delete" for event in task.events):
            logger.info("[WEBHOOK] %s: a delete event, but it still exists; applied as an update", task.describe())
        result = APPLY[task.entity](task.local_id, task.bitrix_id, remote, task.applied_at)
        logger.info("[WEBHOOK] Applied %s: %s", task.describe(), result)
        outcome.done.extend(task.messages)

    def _gone(self, task: EventTask, outcome: ChunkOutcome) -> None:
        """Deleted in Bitrix (whatever the event said, the record is gone): unlink, do not re-create."""
        if apply.unlink(task.entity, task.local_id, task.bitrix_id, task.applied_at):
            logger.warning(
                "[WEBHOOK] %s was deleted in Bitrix; %s %s unlinked and NOT re-created "
                "(its next change or `bitrix_resync` creates a new one)",
                task.describe(), entities.get(task.entity).local_name, task.local_id,
            )  # fmt: skip
        outcome.done.extend(task.messages)

    def _fetch(self, tasks: list[EventTask]) -> dict[EventTask, dict | BitrixError]:
        """Each task's current Bitrix record, or the error for it; one request per 50 records."""
        found: dict[EventTask, dict | BitrixError] = {}
        for start in range(0, len(tasks), MAX_COMMANDS):
            chunk = {t.command_key: t for t in tasks[start : start + MAX_COMMANDS]}
            commands = {key: (entities.get(t.entity).method("get"), {"id": t.bitrix_id}) for key, t in chunk.items()}
            try:
                result = self.client.batch(commands)
            except BitrixError as exc:
                found.update((task, exc) for task in chunk.values())
                continue
            for key, task in chunk.items():
                value = result.results.get(key)
                error = result.errors.get(key) or BitrixError("INVALID_RESPONSE", f"{key}: not a record: {value!r:.80}")
                found[task] = value if isinstance(value, dict) else error
        return found

    # -- outcomes -------------------------------------------------------------------
    def _ignore(self, task: EventTask, why: str, outcome: ChunkOutcome, *, level: int = logging.DEBUG) -> None:
        logger.log(level, "[WEBHOOK] Ignored %s for %s: %s", task.events[0].event, task.describe(), why)
        outcome.done.extend(task.messages)

    def _failed(self, task: EventTask, error: BitrixError, outcome: ChunkOutcome) -> None:
        logger.error("[WEBHOOK] Could not fetch %s: %s", task.describe(), error)
        if error.kind is ErrorKind.CONFIG:
            outcome.pause = outcome.pause or error
            outcome.deferred.extend(task.messages)
        elif error.kind is ErrorKind.PERMANENT:
            outcome.dead.extend((m, self._letter(m, "permanent_error", error.code, str(error))) for m in task.messages)
        else:
            outcome.retry.extend((message, error) for message in task.messages)

    def _letter(self, message: StreamMessage, reason: str, code: str, description: str) -> DeadLetter:
        return DeadLetter.of(message, reason=reason, consumer=self.consumer, error_code=code, description=description)
