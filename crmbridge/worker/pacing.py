"""The worker's side of coalescing (``crmbridge.publishing.coalescing``): one sync per record per interval.

* ``hold_recent``: a record this worker synced less than ``interval`` seconds ago
  waits (its message stays pending, so new changes coalesce into it): a burst of
  edits costs about one portal update per interval;
* ``clear_dirty``: before a chunk's records are loaded, their dirty flags go, so a
  change skipped at publish from then on sets the flag again;
* ``ack``: each record's messages are acknowledged unless its flag was set
  meanwhile; such a record is held and synced once more.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import redis

from crmbridge.publishing import coalescing
from crmbridge.redis_io import streams
from crmbridge.worker.outcome import record_of
from crmbridge.worker.retry_schedule import RetrySchedule
from crmbridge.worker.stream_consumer import StreamConsumer, StreamMessage

logger = logging.getLogger("crmbridge.worker")

Key = tuple[str, int]
REMEMBERED = 10_000  # past this many records, those synced over an interval ago are forgotten


@dataclass(kw_only=True)
class RecordPacing:
    client: redis.Redis
    consumer: StreamConsumer
    schedule: RetrySchedule
    interval: float  # ``WorkerConfig.record_interval_seconds``
    _synced_at: dict[Key, float] = field(default_factory=dict, init=False)  # record -> when this worker synced it

    def hold_recent(self, messages: list[StreamMessage]) -> list[StreamMessage]:
        """Hold the messages of records synced less than ``interval`` ago, until then; return the others."""
        now, ready = time.monotonic(), []
        for message in messages:
            key = record_of(message)
            wait = self.interval - (now - self._synced_at[key]) if key in self._synced_at else 0.0
            if wait > 0:
                self.schedule.hold(message, delay=wait, counted=False)
            else:
                ready.append(message)
        return ready

    def clear_dirty(self, messages: list[StreamMessage]) -> None:
        """Before the records are loaded: a change skipped at publish from now on is seen at the ack."""
        coalescing.clear_dirty(self.client, [key for m in messages if (key := record_of(m))])

    def ack(self, done: list[StreamMessage]) -> list[StreamMessage]:
        """Acknowledge what is done; a record changed meanwhile (dirty) is synced again instead.

        Returns the messages acknowledged.
        """
        by_record: dict[Key, list[StreamMessage]] = {}
        for message in done:
            key = record_of(message)
            if key is not None:
                by_record.setdefault(key, []).append(message)
        self.consumer.ack([m for m in done if record_of(m) is None])
        batches = {key: [m.id for m in batch] for key, batch in by_record.items()}
        refused = coalescing.ack_unless_dirty(self.client, streams.operations_stream(), streams.GROUP, batches)
        self._note_synced(by_record, refused)
        return [m for m in done if record_of(m) not in refused]

    def _note_synced(self, by_record: dict[Key, list[StreamMessage]], refused: set[Key]) -> None:
        now = time.monotonic()
        if len(self._synced_at) > REMEMBERED:  # forget records synced long ago
            self._synced_at = {k: t for k, t in self._synced_at.items() if now - t < self.interval}
        for key, batch in by_record.items():
            self._synced_at[key] = now
            if key in refused:
                logger.debug("[WORKER] %s %s changed while it was synced; syncing it again", *key)
                for message in batch:
                    self.schedule.hold(message, delay=self.interval, counted=False)
