"""What happens to each message of a processed chunk: the worker's outcome rules.

A processor (``SyncBatch`` for operations, ``InboundBatch`` for portal events)
sorts its messages into a ``ChunkOutcome``; ``OutcomeRules.apply`` then acts:

* ``done``     acknowledged (unless the record changed meanwhile: ``coalescing.RecordCoalescing.ack``),
               counted as processed, "last success" marked;
* ``retry``    held for a backoff (Redis's delivery count is the retry counter);
               past ``max_retries`` moved to the dead letters instead;
* ``dead``     moved to ``{prefix}dead`` with its reason and acknowledged, in one Lua script
               (XACK only after XADD succeeded; refused letters stay pending and are held);
* ``deferred`` another worker holds the record: looked at again soon, not counted;
* ``pause``    a configuration error: the runner pauses (its state, not decided here).

Nothing is acknowledged without being synced or dead-lettered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from crmbridge.bitrix.errors import BitrixError
from crmbridge.publishing.messages import InvalidMessage, Operation
from crmbridge.redis_io import streams, telemetry
from crmbridge.worker.config import WorkerConfig
from crmbridge.worker.dead_letters import DeadLetter, DeadLetterError, move_to_dead_letters
from crmbridge.worker.heartbeat import Counters
from crmbridge.worker.retry_schedule import RetrySchedule, backoff_seconds
from crmbridge.worker.stream_consumer import StreamConsumer, StreamMessage

logger = logging.getLogger("crmbridge.worker")

DEFER_SECONDS = 0.25  # a record another worker holds: look again soon...
DEFER_MAX_SECONDS = 5.0  # ...but never less often than this


@dataclass
class ChunkOutcome:
    done: list[StreamMessage] = field(default_factory=list)
    retry: list[tuple[StreamMessage, BitrixError]] = field(default_factory=list)
    dead: list[tuple[StreamMessage, DeadLetter]] = field(default_factory=list)
    deferred: list[StreamMessage] = field(default_factory=list)  # try again soon, not a retry
    pause: BitrixError | None = None  # a configuration error: stop until it is fixed

    def merge(self, other: ChunkOutcome) -> None:
        self.done += other.done
        self.retry += other.retry
        self.dead += other.dead
        self.deferred += other.deferred
        self.pause = self.pause or other.pause


def operation_of(message: StreamMessage) -> Operation | None:
    try:
        return Operation.from_fields(message.fields)
    except InvalidMessage:
        return None


def record_of(message: StreamMessage) -> tuple[str, int] | None:
    """``(entity, local id)`` of an operations message; None for an event or an invalid message."""
    if message.stream != streams.operations_stream():
        return None
    operation = operation_of(message)
    return (operation.entity, operation.local_id) if operation else None


@dataclass(kw_only=True)
class OutcomeRules:
    """Acts on a ``ChunkOutcome`` with the collaborators it is given (no runner state).

    ``acknowledge`` acknowledges the done messages and returns those it did
    (``RecordCoalescing.ack``: a record changed meanwhile is synced again instead).
    """

    client: redis.Redis
    consumer: StreamConsumer
    schedule: RetrySchedule
    counters: Counters
    config: WorkerConfig
    acknowledge: Callable[[list[StreamMessage]], list[StreamMessage]]

    def apply(self, outcome: ChunkOutcome) -> None:
        self._count("processed", self.acknowledge(outcome.done))
        if outcome.done:
            telemetry.mark(self.client, "success", f"{len(outcome.done)} message(s) synced")
        dead = [(m, letter) for m, letter in outcome.dead]
        for message, error in outcome.retry:
            if message.deliveries > self.config.max_retries:
                dead.append((message, self._exhausted(message, error)))
            else:
                self._schedule_retry(message, error)
        self._dead_letter(dead)
        for message in outcome.deferred:
            # Another worker holds the record (or a dead one's lock has not expired yet): look
            # again soon, then less and less often, so a long wait does not flood the log.
            delay = min(DEFER_MAX_SECONDS, DEFER_SECONDS * 2**message.deferrals)
            if outcome.pause:
                delay = self.config.pause_probe_seconds
            message.deferrals += 1
            self.schedule.hold(message, delay=delay, counted=False)

    def _schedule_retry(self, message: StreamMessage, error: BitrixError) -> None:
        retry = message.deliveries
        logger.error("[WORKER] Error processing operation message: %s: %s", message.id, error)
        logger.warning("Message %s will be retried (retry %s/%s)", message.id, retry, self.config.max_retries)
        delay = backoff_seconds(
            retry, base=self.config.retry_base_seconds, cap=self.config.retry_max_seconds, retry_after=error.retry_after
        )
        self.schedule.hold(message, delay=delay, counted=True)
        self._count("retried", [message])
        telemetry.mark(self.client, "failure", str(error))

    def _exhausted(self, message: StreamMessage, error: BitrixError) -> DeadLetter:
        logger.error("[WORKER] Error processing operation message: %s: %s", message.id, error)
        return DeadLetter.of(
            message,
            reason="max_retries_exceeded",
            consumer=self.consumer.name,
            error_code=error.code,
            description=str(error),
        )

    def _dead_letter(self, dead: list[tuple[StreamMessage, DeadLetter]]) -> None:
        dead = self._move_to_dead_letters(dead)
        if not dead:
            return
        for message, letter in dead:
            logger.error(
                "[WORKER] Message %s moved to %s after %s attempt(s): %s (%s)",
                message.id, streams.dead_letter_stream(), letter.attempts, letter.reason, letter.error_description,
            )  # fmt: skip
        self._count("dead_lettered", [m for m, _ in dead])
        telemetry.mark(self.client, "failure", dead[-1][1].error_description or dead[-1][1].reason)

    def _move_to_dead_letters(
        self, dead: list[tuple[StreamMessage, DeadLetter]]
    ) -> list[tuple[StreamMessage, DeadLetter]]:
        """Move them; returns those moved. Letters Redis refused stay pending (not acknowledged), held for later."""
        if not dead:
            return []
        try:
            move_to_dead_letters(self.client, [letter for _, letter in dead])
        except DeadLetterError as exc:
            logger.error(
                "[WORKER] Could not write dead letters to %s (%s); kept pending", streams.dead_letter_stream(), exc
            )
            for message in [m for m, _ in dead if m.id in exc.failed]:
                self.schedule.hold(message, delay=max(self.config.retry_max_seconds, 1.0), counted=False)
            return [(m, letter) for m, letter in dead if m.id not in exc.failed]
        return dead

    def _count(self, outcome: str, messages: list[StreamMessage]) -> None:
        if not messages:
            return
        setattr(self.counters, outcome, getattr(self.counters, outcome) + len(messages))
        kinds: dict[tuple[str, str], int] = {}
        for message in messages:
            kind = _kind(message)
            kinds[kind] = kinds.get(kind, 0) + 1
        for (entity, op), n in kinds.items():
            telemetry.count(self.client, outcome, entity, op, n)


def _kind(message: StreamMessage) -> tuple[str, str]:
    """(entity, op) labels for the counters; inbound events count as ``(<entity>, "event")``."""
    if message.stream != streams.operations_stream():
        return (message.fields.get("entity") or "unknown", "event")
    operation = operation_of(message)
    return (operation.entity, operation.op) if operation else ("invalid", "invalid")
