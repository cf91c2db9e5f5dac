"""The worker loop (``run_bitrix_worker``), in the manner of healthchecks' ``sendalerts``.

The signal handler only sets a flag; the loop is ``while not self.shutdown``
and calls step methods that tests can drive one by one. Waiting is a blocking
``XREADGROUP ... BLOCK``, never a sleep-and-poll; the block time bounds how
long a shutdown takes.

What survives what:

* a worker killed mid-chunk: its entries stay pending and a live worker takes
  them over as soon as its heartbeat expires (3 x ``heartbeat_seconds``; see
  ``maintenance.take_over``); record locks and the create marker stop the
  takeover from creating a second deal;
* Redis gone: the loop retries with backoff and recreates the group (NOGROUP)
  with a pause, so a persisting error cannot spin a CPU;
* a bad message: it goes to ``{prefix}dead`` with the reason, the loop goes on;
* a configuration error (webhook expired, no rights): the worker pauses, keeps
  its messages pending, probes the portal (``profile``) every
  ``pause_probe_seconds`` whatever it holds, and resumes on a successful probe.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time

import redis
from django.core.exceptions import ImproperlyConfigured
from django.db import InterfaceError, OperationalError, close_old_connections

from crmbridge import coalescing, streams, telemetry
from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.errors import BitrixError, ErrorKind
from crmbridge.dead_letters import DeadLetter, DeadLetterError, move_to_dead_letters
from crmbridge.redis_connection import get_redis
from crmbridge.worker.config import WorkerConfig
from crmbridge.worker.heartbeat import Heartbeat, consumer_name
from crmbridge.worker.maintenance import Maintenance, worker_streams
from crmbridge.worker.record_locks import RecordLocks
from crmbridge.worker.record_pacing import RecordPacer
from crmbridge.worker.retry_schedule import RetrySchedule, backoff_seconds
from crmbridge.worker.stream_consumer import StreamConsumer, StreamMessage, is_nogroup
from crmbridge.worker.sync_batch import ChunkOutcome, SyncBatch, operation_of

logger = logging.getLogger("crmbridge.worker")

DEFER_SECONDS = 0.25  # a record another worker holds: look again soon...
DEFER_MAX_SECONDS = 5.0  # ...but never less often than this
REDIS_BACKOFF_MAX = 30.0
DATABASE_BACKOFF_SECONDS = 5.0


class Worker:
    def __init__(
        self,
        config: WorkerConfig | None = None,
        *,
        name: str | None = None,
        once: bool = False,
        bitrix: BitrixClient | None = None,
    ) -> None:
        self.config = config or WorkerConfig.from_settings()
        self.name = name or consumer_name()
        self.once = once
        # Blocking reads need a socket timeout longer than the block time.
        self.redis = get_redis(socket_timeout=self.config.poll_interval + 10)
        self.consumer = StreamConsumer(self.redis, name=self.name, stream_names=worker_streams())
        self.schedule = RetrySchedule()
        self.heartbeat = Heartbeat(self.redis, self.name, self.config.as_dict(), self.config.heartbeat_seconds)
        self.maintenance = Maintenance(self)
        self.shutdown = False
        self.iteration = 0
        self.paused_reason = ""
        self._next_probe = 0.0
        self._step_started = time.monotonic()
        self.pacer = RecordPacer(self.config.record_interval_seconds, self.config.record_interval_max_seconds)
        self._redis_failures = 0
        self._bitrix = bitrix
        self._sync: SyncBatch | None = None
        self._previous_handlers: dict[int, object] = {}

    # -- lifecycle -------------------------------------------------------------
    def run(self) -> int:
        """Run until a signal (or, with ``once``, until nothing is left). Returns the exit code."""
        self._install_signal_handlers()
        logger.info("Starting Bitrix worker background task... (consumer %s)", self.name)
        logger.info("Bitrix worker task created: consumer %s in group %s", self.name, streams.GROUP)
        logger.info("Starting Bitrix worker - entering process_messages()")
        code = 0
        try:
            self._start()
            while not self.shutdown:
                if not self._guarded_step() and self.once:
                    code = 2 if self.paused_reason else 0
                    break
        finally:
            self._stop()
        return code

    def _start(self) -> None:
        while not self.shutdown:
            try:
                self.consumer.ensure_groups()
                self.heartbeat.beat(force=True)
                self.heartbeat.start_thread(self.loop_alive)
                self.recover_own_pending()
                return
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                self._redis_down(exc)

    def _stop(self) -> None:
        self.heartbeat.state = "stopping"
        held = len(self.schedule)
        logger.info("[WORKER] Stopping %s: %s message(s) left pending for other workers", self.name, held)
        with contextlib.suppress(redis.RedisError):
            self.heartbeat.remove()
        if self._bitrix is not None:
            self._bitrix.close()
        self._restore_signal_handlers()

    def _install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT set the shutdown flag; the previous handlers come back in ``_stop``."""

        def handle(signum, frame):
            if self.shutdown:  # second signal: stop at once
                os._exit(128 + signum)
            logger.info("[WORKER] Received %s: finishing the message in hand", signal.Signals(signum).name)
            self.shutdown = True

        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous_handlers[sig] = signal.signal(sig, handle)
            except ValueError:  # not the main thread (tests): no handlers
                return

    def _restore_signal_handlers(self) -> None:
        for sig, previous in self._previous_handlers.items():
            signal.signal(sig, previous)
        self._previous_handlers.clear()

    # -- one iteration -------------------------------------------------------------
    def _guarded_step(self) -> bool:
        """``step`` that survives anything: an unexpected error is logged, then a pause."""
        try:
            return self.step()
        except Exception:
            logger.exception("[WORKER] Error processing operation message: unexpected error in the loop")
            self._sleep(1.0)
            return True

    def loop_alive(self) -> bool:
        """Has the loop started a step recently? The heartbeat thread stops beating for a stuck loop.

        A step is a blocking read (``poll_interval``) or one chunk; a chunk may wait on
        Bitrix (timeouts, rate limits) but not for ``claim_idle_seconds`` on end.
        """
        limit = max(self.config.claim_idle_seconds, 3 * self.config.heartbeat_seconds, self.config.poll_interval + 10)
        return time.monotonic() - self._step_started < limit

    def step(self) -> bool:
        """One loop iteration. Returns whether there was anything to do or wait for."""
        self._step_started = time.monotonic()
        self.iteration += 1
        level = logging.INFO if self.iteration == 1 else logging.DEBUG
        logger.log(level, "Worker loop iteration %s - running=%s", self.iteration, not self.shutdown)
        close_old_connections()
        try:
            self.maintenance.run()
            if self.paused_reason:
                return self._paused_step()
            worked = self.process_due()
            worked = self.process_new() or worked
            self._redis_failures = 0
            return worked or len(self.schedule) > 0
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._redis_down(exc)
            return True
        except redis.ResponseError as exc:
            if not is_nogroup(exc):
                raise
            self._group_missing(exc)
            return True

    def recover_own_pending(self) -> int:
        """On start: what this consumer name held before (a restart), first."""
        total = 0
        after = {stream: "0" for stream in self.consumer.streams}
        while not self.shutdown:
            before = dict(after)
            messages = self.consumer.read_own_pending(count=self.config.max_chunk, after=after)
            if not messages and after == before:
                break
            total += len(messages)
            self.handle(messages)
        if total:
            logger.info("[WORKER] Recovered %s pending message(s) of %s", total, self.name)
        return total

    def process_due(self) -> bool:
        """Retry held messages whose time has come."""
        due = self.schedule.pop_due(self.config.max_chunk)
        if not due:
            return False
        counted = [h.message for h in due if h.counted]
        quiet = [h.message for h in due if not h.counted]
        messages = self.consumer.reclaim(counted, count_delivery=True) if counted else []
        messages += self.consumer.reclaim(quiet, count_delivery=False) if quiet else []
        if messages:
            self.handle(messages)
        return True

    def process_new(self) -> bool:
        """Read new messages; block until some arrive or a held one falls due."""
        room = self.config.max_chunk
        wait = self.schedule.seconds_until_next()
        block = self.config.poll_interval if wait is None else min(wait, self.config.poll_interval)
        block_ms = max(int(block * 1000), 1) if block > 0 else None
        messages = self.consumer.read_new(count=min(self.config.batch_size, room), block_ms=block_ms)
        # A backlog: top the chunk up so that batches go out full.
        if len(messages) >= self.config.batch_size and room > len(messages):
            messages += self.consumer.read_new(count=room - len(messages), block_ms=None)
        if not messages:
            return False
        self.handle(messages)
        return True

    # -- outcome of a chunk -----------------------------------------------------
    def handle(self, messages: list[StreamMessage]) -> None:
        """Sync a chunk and act on each message's outcome; never raises for a bad message."""
        self._step_started = time.monotonic()  # progress: the heartbeat goes on
        messages = self._wait_for_record_interval(messages)
        if not messages:
            return
        sync = self._sync_batch()
        if sync is None:
            for message in messages:
                self.schedule.hold(message, delay=self.config.pause_probe_seconds, counted=False)
            return
        # Before the records are loaded: a change skipped at publish from now on is seen at the ack.
        coalescing.clear_dirty(self.redis, [k for m in messages if (k := self._record_of(m))])
        try:
            outcome = self._process_chunk(sync, messages)
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            raise
        except (OperationalError, InterfaceError):  # the database is away: not the messages' fault
            logger.exception("[WORKER] Database unavailable; %s message(s) kept pending", len(messages))
            for message in messages:
                self.schedule.hold(message, delay=DATABASE_BACKOFF_SECONDS, counted=False)
            return
        except Exception as exc:  # a bug: isolate it to the message(s) causing it, never stop the loop
            if len(messages) > 1:
                logger.exception(
                    "[WORKER] Error processing operation message: chunk of %s failed; retrying its messages one by one",
                    len(messages),
                )
                for message in messages:
                    self.handle([message])
                return
            logger.exception("[WORKER] Error processing operation message: %s failed", messages[0].id)
            outcome = ChunkOutcome(retry=[(messages[0], BitrixError(type(exc).__name__, str(exc)))])
        self._apply(outcome)

    def _process_chunk(self, sync: SyncBatch, messages: list[StreamMessage]) -> ChunkOutcome:
        """Operations go to the sync; inbound Bitrix events to their own processor."""
        operations = [m for m in messages if m.stream == streams.operations_stream()]
        events = [m for m in messages if m.stream != streams.operations_stream()]
        outcome = sync.process(operations) if operations else ChunkOutcome()
        if events:
            from crmbridge.inbound.processor import InboundBatch

            outcome.merge(InboundBatch(sync.client, sync.locks, consumer=self.name).process(events))
        return outcome

    def _apply(self, outcome: ChunkOutcome) -> None:
        acked = self._ack(outcome.done)
        self._count("processed", acked)
        if outcome.done:
            telemetry.mark(self.redis, "success", f"{len(outcome.done)} message(s) synced")
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
        if outcome.pause:
            self._pause(outcome.pause)
        elif self.paused_reason and outcome.done:
            self._resume()

    # -- coalescing (crmbridge.coalescing) ----------------------------------------
    def _record_of(self, message: StreamMessage) -> tuple[str, int] | None:
        if message.stream != streams.operations_stream():
            return None
        operation = operation_of(message)
        return (operation.entity, operation.local_id) if operation else None

    def _wait_for_record_interval(self, messages: list[StreamMessage]) -> list[StreamMessage]:
        """Hold the messages of records synced too recently (``RecordPacer``), until their time."""
        now, ready = time.monotonic(), []
        for message in messages:
            key = self._record_of(message)
            wait = self.pacer.wait(key, now) if key is not None else 0.0
            if wait > 0:
                self.schedule.hold(message, delay=wait, counted=False)
            else:
                ready.append(message)
        return ready

    def _ack(self, done: list[StreamMessage]) -> list[StreamMessage]:
        """Acknowledge what is done; a record changed meanwhile (dirty) is synced again instead."""
        by_record: dict[tuple[str, int], list[StreamMessage]] = {}
        for message in done:
            key = self._record_of(message)
            if key is not None:
                by_record.setdefault(key, []).append(message)
        self.consumer.ack([m for m in done if self._record_of(m) is None])
        batches = {key: [m.id for m in batch] for key, batch in by_record.items()}
        refused = coalescing.ack_unless_dirty(self.redis, streams.operations_stream(), streams.GROUP, batches)
        now = time.monotonic()
        for key, batch in by_record.items():
            self.pacer.synced(key, now)
            if key in refused:
                logger.debug("[WORKER] %s %s changed while it was synced; syncing it again", *key)
                for message in batch:
                    self.schedule.hold(message, delay=self.pacer.wait(key, now), counted=False)
        return [m for m in done if self._record_of(m) not in refused]

    def _schedule_retry(self, message: StreamMessage, error: BitrixError) -> None:
        retry = message.deliveries
        logger.error("[WORKER] Error processing operation message: %s: %s", message.id, error)
        logger.warning("Message %s will be retried (retry %s/%s)", message.id, retry, self.config.max_retries)
        delay = backoff_seconds(
            retry, base=self.config.retry_base_seconds, cap=self.config.retry_max_seconds, retry_after=error.retry_after
        )
        self.schedule.hold(message, delay=delay, counted=True)
        self._count("retried", [message])
        telemetry.mark(self.redis, "failure", str(error))

    def _exhausted(self, message: StreamMessage, error: BitrixError) -> DeadLetter:
        logger.error("[WORKER] Error processing operation message: %s: %s", message.id, error)
        return DeadLetter.of(
            message, reason="max_retries_exceeded", consumer=self.name, error_code=error.code, description=str(error)
        )

    def _dead_letter(self, dead: list[tuple[StreamMessage, DeadLetter]]) -> None:
        if not dead:
            return
        try:
            move_to_dead_letters(self.redis, [letter for _, letter in dead])
        except DeadLetterError as exc:  # not acknowledged: keep them pending and try again later
            logger.error(
                "[WORKER] Could not write dead letters to %s (%s); kept pending", streams.dead_letter_stream(), exc
            )
            for message in [m for m, _ in dead if m.id in exc.failed]:
                self.schedule.hold(message, delay=max(self.config.retry_max_seconds, 1.0), counted=False)
            dead = [(m, letter) for m, letter in dead if m.id not in exc.failed]
            if not dead:
                return
        for message, letter in dead:
            logger.error(
                "[WORKER] Message %s moved to %s after %s attempt(s): %s (%s)",
                message.id, streams.dead_letter_stream(), letter.attempts, letter.reason, letter.error_description,
            )  # fmt: skip
        self._count("dead_lettered", [m for m, _ in dead])
        telemetry.mark(self.redis, "failure", dead[-1][1].error_description or dead[-1][1].reason)

    def _count(self, outcome: str, messages: list[StreamMessage]) -> None:
        if not messages:
            return
        setattr(self.heartbeat.counters, outcome, getattr(self.heartbeat.counters, outcome) + len(messages))
        kinds: dict[tuple[str, str], int] = {}
        for message in messages:
            kind = self._kind(message)
            kinds[kind] = kinds.get(kind, 0) + 1
        for (entity, op), n in kinds.items():
            telemetry.count(self.redis, outcome, entity, op, n)

    @staticmethod
    def _kind(message: StreamMessage) -> tuple[str, str]:
        """(entity, op) labels for the counters; inbound events count as ``(<entity>, "event")``."""
        if message.stream != streams.operations_stream():
            return (message.fields.get("entity") or "unknown", "event")
        operation = operation_of(message)
        return (operation.entity, operation.op) if operation else ("invalid", "invalid")

    # -- pause on configuration errors ------------------------------------------
    def _sync_batch(self) -> SyncBatch | None:
        if self._sync is None:
            try:
                self._bitrix = self._bitrix or BitrixClient.from_settings()
            except ImproperlyConfigured as exc:
                self._pause(BitrixError("NOT_CONFIGURED", str(exc), kind=ErrorKind.CONFIG))
                return None
            locks = RecordLocks(
                self.redis,
                owner=self.name,
                lease_ms=int(self.config.claim_idle_seconds * 2000),
                dead_owners=lambda: telemetry.dead_workers(self.redis) - {self.name},
            )
            self._sync = SyncBatch(
                self._bitrix, locks, consumer=self.name, max_commands=self.config.commands_per_request
            )
        return self._sync

    def _pause(self, error: BitrixError) -> None:
        if not self.paused_reason:
            logger.error("[WORKER] Bitrix configuration error, pausing sync: %s", error)
        else:
            logger.warning("[WORKER] Still paused: %s", error)
        self.paused_reason = str(error)
        self.heartbeat.state, self.heartbeat.pause_reason = "paused", self.paused_reason
        self._next_probe = time.monotonic() + self.config.pause_probe_seconds
        self.heartbeat.beat(held=len(self.schedule), force=True)
        telemetry.mark(self.redis, "failure", self.paused_reason)

    def _resume(self) -> None:
        logger.info("[WORKER] Bitrix answers again; resuming sync (was paused: %s)", self.paused_reason)
        self.paused_reason = ""
        self.heartbeat.state, self.heartbeat.pause_reason = "running", ""
        self.schedule.make_all_due()
        self.heartbeat.beat(held=len(self.schedule), force=True)

    def _paused_step(self) -> bool:
        """While paused: no new reads; every probe interval, probe the portal itself.

        The probe does not depend on what is held: held messages may all be waiting
        for something else (an inbound event behind a local change that the paused
        worker has not read yet), so their outcome cannot tell that the portal is back.
        """
        if self.once:
            return False
        if time.monotonic() < self._next_probe:
            self._sleep(min(1.0, self._next_probe - time.monotonic()))
            return True
        self._next_probe = time.monotonic() + self.config.pause_probe_seconds
        self._probe()
        return True

    def _probe(self) -> None:
        """``profile``: a configuration error keeps the pause; any other answer resumes (retries handle the rest)."""
        sync = self._sync_batch()
        if sync is None:
            return
        try:
            sync.client.call("profile")
        except BitrixError as exc:
            if exc.kind is ErrorKind.CONFIG:
                self._pause(exc)
                return
        self._resume()

    # -- Redis trouble -------------------------------------------------------------
    def _redis_down(self, exc: Exception) -> None:
        self._redis_failures += 1
        delay = min(REDIS_BACKOFF_MAX, 0.5 * 2 ** min(self._redis_failures - 1, 6))
        logger.warning("[WORKER] Redis connection error (%s); retrying in %.1fs", exc, delay)
        self._sleep(delay)
        with contextlib.suppress(redis.RedisError):
            self.consumer.ensure_groups()  # Redis may have come back empty

    def _group_missing(self, exc: Exception) -> None:
        logger.warning("[WORKER] NOGROUP (%s): recreating consumer group %s", exc, streams.GROUP)
        self._sleep(1.0)  # NOGROUP fails instantly: never spin
        try:
            self.consumer.ensure_groups()
        except redis.RedisError as again:
            logger.warning("[WORKER] Could not recreate the consumer group: %s", again)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.shutdown and time.monotonic() < deadline:
            time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
