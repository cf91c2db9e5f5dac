"""The worker loop (``run_bitrix_worker``), in the manner of healthchecks' ``sendalerts``.

The signal handler only sets an event; the loop is ``while not self.shutdown``
and calls step methods that tests can drive one by one. Waiting is a blocking
``XREADGROUP ... BLOCK`` (the block time bounds how long a shutdown takes) or,
for a pause, a wait on that event, never a sleep-and-poll.

Collaborators, each in its own module: ``StreamConsumer`` (Redis mechanics),
``Chores`` (periodic work, returns what it took over), a processor per stream
(``SyncBatch`` for operations, ``InboundBatch`` for portal events),
``OutcomeRules`` (ack / retry / dead-letter / defer) and ``RecordCoalescing``
(the worker's side of coalescing: a record synced recently waits, paced by
``RecordPacer``; ack unless dirty). The runner keeps only the loop and the pause state.

What survives what:

* a worker killed mid-chunk: its entries stay pending and a live worker takes
  them over as soon as its heartbeat expires (3 x ``heartbeat_seconds``; see
  ``chores.Chores.take_over``); record locks and the create marker stop the
  takeover from creating a second deal;
* Redis gone: the loop retries with backoff and recreates the group (NOGROUP)
  with a pause, so a persisting error cannot spin a CPU; Redis back without its
  data (new run_id, marker gone, NOGROUP): the waiting records are queued again
  at once (``redis_loss``);
* a stream key of another type (``SET bitrix:webhooks x``): that stream is set
  aside, named in the log with the fix, and the others go on; it is consumed
  again once the key is a stream or gone (``StreamConsumer.broken``);
* a bad message: it goes to ``{prefix}dead`` with the reason, the loop goes on;
  an unexpected error in a chunk is isolated: its messages are retried one by one;
* a configuration error (webhook expired, no rights): the worker pauses, keeps
  its messages pending, probes the portal (``profile``) every
  ``pause_probe_seconds`` whatever it holds, and resumes on a successful probe.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable

import redis
from django.core.exceptions import ImproperlyConfigured
from django.db import InterfaceError, OperationalError, close_old_connections

from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.errors import BitrixError, ErrorKind
from crmbridge.bitrix.portal_check import check_portal, pause_error
from crmbridge.inbound.processor import InboundBatch
from crmbridge.redis_io import streams, telemetry
from crmbridge.redis_io.connection import get_redis
from crmbridge.redis_io.key_types import is_wrong_type
from crmbridge.worker.chores import Chores
from crmbridge.worker.coalescing import RecordCoalescing
from crmbridge.worker.config import WorkerConfig
from crmbridge.worker.contact_adoption import start_lookup_check
from crmbridge.worker.heartbeat import Heartbeat, consumer_name
from crmbridge.worker.outcome import ChunkOutcome, OutcomeRules
from crmbridge.worker.record_locks import RecordLocks
from crmbridge.worker.record_pacing import RecordPacer
from crmbridge.worker.retry_schedule import RetrySchedule
from crmbridge.worker.stream_consumer import StreamConsumer, StreamMessage
from crmbridge.worker.sync_batch import SyncBatch

logger = logging.getLogger("crmbridge.worker")

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
        self.consumer = StreamConsumer(self.redis, name=self.name, stream_names=streams.consumed_streams())
        self.schedule = RetrySchedule()
        self.heartbeat = Heartbeat(self.redis, self.name, self.config.as_dict(), self.config.heartbeat_seconds)
        self.heartbeat.extra_fields = self._portal_counters
        collaborators = {"client": self.redis, "consumer": self.consumer, "schedule": self.schedule}
        self.chores = Chores(**collaborators, heartbeat=self.heartbeat, config=self.config)
        pacer = RecordPacer(self.config.record_interval_seconds, self.config.record_interval_max_seconds)
        self.coalescing = RecordCoalescing(**collaborators, pacer=pacer)
        self.outcomes = OutcomeRules(
            **collaborators, counters=self.heartbeat.counters, config=self.config, acknowledge=self.coalescing.ack
        )
        self._stopping = threading.Event()
        self.iteration = 0
        self.paused_reason = ""
        self._next_probe = 0.0
        self._step_started = time.monotonic()
        self._redis_failures = 0
        self._bitrix = bitrix
        self._sync: SyncBatch | None = None
        self._portal_checked = False  # the mapping settings were found in the portal (portal_check)
        self._processors: dict[str, Callable[[list[StreamMessage]], ChunkOutcome]] = {}
        self._previous_handlers: dict[int, object] = {}
        self._portal_check: threading.Thread | None = None

    @property
    def shutdown(self) -> bool:
        return self._stopping.is_set()

    @shutdown.setter
    def shutdown(self, value: bool) -> None:
        if value:
            self._stopping.set()
        else:
            self._stopping.clear()

    def _portal_counters(self) -> dict:
        """The portal client's counters for the heartbeat (``bitrixsync_bitrix_*`` in /metrics)."""
        client = self._bitrix
        if client is None:
            return {}
        return {
            "bitrix_calls": client.calls,
            "bitrix_call_seconds_sum": f"{client.call_seconds:.6f}",
            "bitrix_rejects": client.rejects,
        }

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
            self._check_portal()
            while not self.shutdown:
                if not self._guarded_step() and self.once:
                    code = 2 if self.paused_reason else 0
                    self._finish_portal_check()
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

    def _check_portal(self) -> None:
        """What the portal must allow (one line naming the setting and the fix), checked beside the loop."""
        self._portal_check = start_lookup_check(self.name)

    def _finish_portal_check(self) -> None:
        """``--once``: the start-up check's line belongs to this run's output."""
        if self._portal_check is not None:
            self._portal_check.join(timeout=self.config.poll_interval + 30)

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
            # Set from another thread: the handler may interrupt this thread inside Event.wait
            # while it holds the event's lock, and setting it here would then deadlock.
            threading.Thread(target=self._stopping.set, daemon=True).start()

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
            claimed = self.chores.run(paused=bool(self.paused_reason))
            if claimed:
                self.handle(claimed)
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
            if is_wrong_type(exc) and self.consumer.find_broken():
                return True  # that stream is set aside; the others go on at once
            if not streams.is_nogroup(exc):
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
        messages = self.coalescing.hold_recent(messages)
        if not messages:
            return
        sync = self._sync_batch()
        if sync is None:
            for message in messages:
                self.schedule.hold(message, delay=self.config.pause_probe_seconds, counted=False)
            return
        self.coalescing.clear_dirty(messages)
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
            outcome = self._isolate(messages, exc)
            if outcome is None:
                return
        self._apply(outcome)

    def _isolate(self, messages: list[StreamMessage], exc: Exception) -> ChunkOutcome | None:
        """After an unexpected error (called in its ``except``): a chunk's messages are handled
        again one by one (returns None); a lone message is retried, counted."""
        if len(messages) > 1:
            logger.exception(
                "[WORKER] Error processing operation message: chunk of %s failed; retrying its messages one by one",
                len(messages),
            )
            for message in messages:
                self.handle([message])
            return None
        logger.exception("[WORKER] Error processing operation message: %s failed", messages[0].id)
        return ChunkOutcome(retry=[(messages[0], BitrixError(type(exc).__name__, str(exc)))])

    def _process_chunk(self, sync: SyncBatch, messages: list[StreamMessage]) -> ChunkOutcome:
        """Each stream's messages go to that stream's processor (operations first)."""
        outcome = ChunkOutcome()
        for stream, process in self._processors.items():
            batch = [m for m in messages if m.stream == stream]
            if batch:
                outcome.merge(process(batch))
        return outcome

    def _apply(self, outcome: ChunkOutcome) -> None:
        self.outcomes.apply(outcome)
        if outcome.pause:
            self._pause(outcome.pause)
        elif self.paused_reason and outcome.done:
            self._resume()

    # -- pause on configuration errors ------------------------------------------
    def _sync_batch(self, *, check_mapping: bool = True) -> SyncBatch | None:
        """The chunk processor; ``None`` while it cannot run (not configured, or the mapping check failed)."""
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
                self._bitrix,
                locks,
                consumer=self.name,
                max_commands=self.config.commands_per_request,
                stopping=lambda: self.shutdown,
            )
            self._processors = {
                streams.operations_stream(): self._sync.process,
                streams.webhooks_stream(): InboundBatch(self._bitrix, locks, consumer=self.name).process,
            }
        return self._sync if not check_mapping or self._check_mapping(self._sync) else None

    def _check_mapping(self, sync: SyncBatch) -> bool:
        """Before the first chunk (and on each probe until it passes): do the mapped pipelines and
        stages exist? If not, pause as on an expired webhook: every deal would fail otherwise.

        A portal that does not answer or refuses the webhook is no verdict: sync goes on
        (retries or the webhook pause handle it), and the check runs again before the next chunk.
        """
        if self._portal_checked:
            return True
        try:
            report = check_portal(sync.client, catalog=sync.custom_fields)
        except ImproperlyConfigured as exc:  # a stage map that does not parse
            self._pause(BitrixError("NOT_CONFIGURED", str(exc), kind=ErrorKind.CONFIG))
            return False
        except BitrixError as exc:
            # No verdict on the mapping. A refused webhook (CONFIG) pauses the sync through the
            # chunk's own commands as before, after its invalid messages are dead-lettered.
            logger.warning("[WORKER] Could not check the portal mapping (%s); will check again", exc)
            return True
        for problem in report.problems:
            if not problem.pauses:
                logger.warning("[WORKER] Portal mapping: %s", problem.text)
        error = pause_error(report)
        if error is not None:
            self._pause(error)
            return False
        self._portal_checked = True
        return True

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
        """``profile``: a configuration error keeps the pause; then the mapping check (a missing
        pipeline or stage keeps it too); any other answer resumes (retries handle the rest).
        One request per probe while the webhook is refused."""
        sync = self._sync_batch(check_mapping=False)
        if sync is None:
            return
        try:
            sync.client.call("profile")
        except BitrixError as exc:
            if exc.kind is ErrorKind.CONFIG:
                self._pause(exc)
                return
        if self._check_mapping(sync):
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
        self.chores.loss_noticed(f"NOGROUP ({exc})")  # the stream or group is gone: its messages too
        self._sleep(1.0)  # NOGROUP fails instantly: never spin
        try:
            self.consumer.ensure_groups()
        except redis.RedisError as again:
            logger.warning("[WORKER] Could not recreate the consumer group: %s", again)

    def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less if a shutdown is asked for meanwhile."""
        self._stopping.wait(max(seconds, 0))
