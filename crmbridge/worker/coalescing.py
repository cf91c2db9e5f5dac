"""The worker's side of coalescing (the protocol: ``crmbridge.publishing.coalescing``).

* ``hold_recent``: a record this worker synced too recently waits (its message
  stays pending, so new changes fold into it) for as long as ``RecordPacer``
  (``crmbridge.worker.record_pacing``) says: the base interval, doubling while
  the record stays hot;
* ``clear_dirty``: before a chunk's records are loaded, their dirty flags go, so a
  change skipped at publish from then on sets the flag again;
* ``ack``: each record's messages are acknowledged unless its flag was set
  meanwhile; such a record is held and synced once more.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis

from crmbridge.publishing.coalescing import ack_unless_dirty
from crmbridge.publishing.coalescing import clear_dirty as clear_dirty_flags
from crmbridge.redis_io import streams
from crmbridge.worker.outcome import record_of
from crmbridge.worker.record_pacing import Key, RecordPacer
from crmbridge.worker.retry_schedule import RetrySchedule
from crmbridge.worker.stream_consumer import StreamConsumer, StreamMessage

logger = logging.getLogger("crmbridge.worker")


@dataclass(kw_only=True)
class RecordCoalescing:
    client: redis.Redis
    consumer: StreamConsumer
    schedule: RetrySchedule
    pacer: RecordPacer

    def hold_recent(self, messages: list[StreamMessage]) -> list[StreamMessage]:
        """Hold the messages of records synced too recently (``RecordPacer``), until their time; return the others."""
        now, ready = time.monotonic(), []
        for message in messages:
            key = record_of(message)
            wait = self.pacer.wait(key, now) if key is not None else 0.0
            if wait > 0:
                self.schedule.hold(message, delay=wait, counted=False)
            else:
                ready.append(message)
        return ready

    def clear_dirty(self, messages: list[StreamMessage]) -> None:
        """Before the records are loaded: a change skipped at publish from now on is seen at the ack."""
        clear_dirty_flags(self.client, [key for m in messages if (key := record_of(m))])

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
        refused = ack_unless_dirty(self.client, streams.operations_stream(), streams.GROUP, batches)
        self._note_synced(by_record, refused)
        return [m for m in done if record_of(m) not in refused]

    def _note_synced(self, by_record: dict[Key, list[StreamMessage]], refused: set[Key]) -> None:
        now = time.monotonic()
        for key, batch in by_record.items():
            self.pacer.synced(key, now)
            if key in refused:
                logger.debug("[WORKER] %s %s changed while it was synced; syncing it again", *key)
                for message in batch:
                    self.schedule.hold(message, delay=self.pacer.wait(key, now), counted=False)
