"""Redis Streams mechanics for one consumer of the ``bitrix_workers`` group.

The delivery count Redis keeps per pending entry is the retry counter: it
survives a worker restart and grows when another worker takes an entry over.

A stream whose key holds another type (``SET bitrix:webhooks x``) is set aside
(``broken``): every read, claim and chore goes on with the other streams, so a
broken webhooks stream never holds operations back, nor the reverse.
``ensure_groups`` (at start, and from the chores while one is broken) takes it
back once the key is a stream again or gone.

Takeover is per consumer (XPENDING ... consumer, then XCLAIM), never XAUTOCLAIM:
which consumers are dead is decided from their heartbeats
(``crmbridge.worker.chores``), and XAUTOCLAIM would take from live ones.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis

from crmbridge.redis_io import streams
from crmbridge.redis_io.key_types import WrongType, is_wrong_type, wrong_type_keys

logger = logging.getLogger("crmbridge.worker")
# XPENDING page size when this consumer looks through its own pending list.
PENDING_PAGE = 500
# A stream set aside for its key's type is named in the log again this often while it stays so.
BROKEN_LOG_SECONDS = 60.0


@dataclass
class StreamMessage:
    stream: str
    id: str
    fields: dict[str, str]
    deliveries: int = 1
    deferrals: int = 0  # times this worker put it back because another held the record (in memory only)

    @property
    def retry(self) -> int:
        """Retries made before this delivery (0 on the first delivery)."""
        return max(self.deliveries - 1, 0)


class StreamConsumer:
    """One consumer name in the group, on every stream the worker consumes."""

    def __init__(self, client: redis.Redis, *, name: str, stream_names: list[str], group: str = streams.GROUP) -> None:
        self.client = client
        self.name = name
        self.all_streams = list(stream_names)
        self.group = group
        self.broken: dict[str, WrongType] = {}  # stream -> its key's wrong type: not consumed
        self._broken_logged: dict[str, float] = {}

    @property
    def streams(self) -> list[str]:
        """The streams consumed now: all but those whose key holds another type."""
        return [stream for stream in self.all_streams if stream not in self.broken]

    # -- group ---------------------------------------------------------------
    def ensure_groups(self) -> None:
        """Create the group on each stream (with MKSTREAM); "already exists" is fine.

        The group starts at ``0`` so that operations published before any worker
        ever ran (the outbox may relay them first) are consumed too. A key of
        another type sets its stream aside; one that is a stream again (or gone,
        then created here) is consumed again.
        """
        for stream in self.all_streams:
            try:
                self.client.xgroup_create(stream, self.group, id="0", mkstream=True)
                logger.info("[WORKER] Created consumer group %s on %s", self.group, stream)
            except redis.ResponseError as exc:
                if is_wrong_type(exc):
                    self.find_broken([stream])
                    continue
                if "BUSYGROUP" not in str(exc):
                    raise
            self._mark_usable(stream)

    def find_broken(self, candidates: list[str] | None = None) -> bool:
        """After a WRONGTYPE: set aside the streams whose key holds another type; True if one was newly found."""
        found = wrong_type_keys(self.client, candidates or self.all_streams)
        new = [wrong for wrong in found if wrong.key not in self.broken]
        for wrong in found:
            self.broken[wrong.key] = wrong
            if wrong in new or time.monotonic() - self._broken_logged.get(wrong.key, 0.0) >= BROKEN_LOG_SECONDS:
                self._broken_logged[wrong.key] = time.monotonic()
                others = ", ".join(self.streams) or "none"
                logger.error(
                    "[WORKER] %s: not consuming it (still consuming: %s). Fix: %s",
                    wrong.describe(), others, wrong.fix(),
                )  # fmt: skip
        return bool(new)

    def _mark_usable(self, stream: str) -> None:
        if self.broken.pop(stream, None) is not None:
            self._broken_logged.pop(stream, None)
            logger.warning("[WORKER] Redis key %s is a stream again: consuming it again", stream)

    # -- reading -------------------------------------------------------------
    def read_new(self, *, count: int, block_ms: int | None) -> list[StreamMessage]:
        """New entries (``>``) from all usable streams, blocking up to ``block_ms`` (None: no block)."""
        if not self.streams:  # every key in the way: wait as a read would, then let the chores look again
            time.sleep((block_ms or 0) / 1000)
            return []
        reply = self.client.xreadgroup(
            self.group, self.name, {stream: ">" for stream in self.streams}, count=count, block=block_ms
        )
        return self._messages(reply, deliveries=1)

    def read_own_pending(self, *, count: int, after: dict[str, str]) -> list[StreamMessage]:
        """This consumer's pending entries with IDs above ``after[stream]``, with delivery counts.

        The caller advances ``after`` past what it got, so each entry is read once:
        re-reading from ``0`` would hand back every entry still pending (a retry,
        a pause) at once, and each history read adds a delivery in Redis.
        """
        messages: list[StreamMessage] = []
        for stream in self.streams:
            reply = self.client.xreadgroup(self.group, self.name, {stream: after.get(stream, "0")}, count=count)
            entries = self._messages(reply, deliveries=1)
            if entries:
                after[stream] = entries[-1].id
            # Entries deleted from the stream come back with no fields: they
            # can never be processed, so take them off the pending list.
            gone = [m.id for m in entries if not m.fields]
            if gone:
                self.client.xack(stream, self.group, *gone)
            messages.extend(self._with_deliveries(stream, [m for m in entries if m.fields]))
        return messages

    def consumers(self, stream: str) -> list[dict]:
        """The group's consumers on ``stream`` (XINFO CONSUMERS: ``name``, ``pending``, ``idle``)."""
        return self.client.xinfo_consumers(stream, self.group)

    def consumers_with_pending(self, stream: str) -> list[dict]:
        """Other consumers of the group on ``stream`` that hold entries (none if the stream or group is gone:
        the next read meets NOGROUP and the runner recreates the group)."""
        try:
            found = self.consumers(stream)
        except redis.ResponseError as exc:
            if streams.is_no_such_key(exc) or streams.is_nogroup(exc):
                return []
            raise
        return [c for c in found if c["pending"] and c["name"] != self.name]

    def claim_from(self, stream: str, consumer: str, *, min_idle_ms: int, count: int) -> list[StreamMessage]:
        """Take over up to ``count`` of ``consumer``'s entries idle at least ``min_idle_ms``.

        XPENDING names the consumer, so a live consumer's entries are never
        touched (XAUTOCLAIM takes from anyone, by idle time alone). The same
        ``min_idle_ms`` on XCLAIM keeps two workers from claiming an entry one
        after the other: the first claim resets its idle time. Entries deleted
        from the stream meanwhile come back without fields and are acknowledged.
        """
        pending = self.client.xpending_range(
            stream, self.group, min="-", max="+", count=count, consumername=consumer, idle=min_idle_ms
        )
        return self._claim_ids(stream, [p["message_id"] for p in pending], min_idle_ms=min_idle_ms)

    def strays(self, held: set[tuple[str, str]], *, min_idle_ms: int, count: int) -> list[StreamMessage]:
        """This consumer's own pending entries that it does not hold, claimed again (a delivery more).

        Between chunks every entry this consumer has pending is held (a retry, a
        deferral, a pause). One that is not was read by a chunk that failed before
        deciding about it (a Redis error mid-chunk): no takeover moves it (its
        consumer is alive), no retry is scheduled and reconciliation counts it as a
        live message, so without this it would wait for a restart.
        """
        found: list[StreamMessage] = []
        for stream in self.streams:
            ids = self._unheld_ids(stream, held, min_idle_ms=min_idle_ms, count=count - len(found))
            found += self._claim_ids(stream, ids, min_idle_ms=min_idle_ms)
        return found

    def _unheld_ids(self, stream: str, held: set[tuple[str, str]], *, min_idle_ms: int, count: int) -> list[str]:
        ids: list[str] = []
        start = "-"
        while len(ids) < count:
            page = self.client.xpending_range(
                stream, self.group, min=start, max="+", count=PENDING_PAGE, consumername=self.name, idle=min_idle_ms
            )
            ids += [p["message_id"] for p in page if (stream, p["message_id"]) not in held]
            if len(page) < PENDING_PAGE:
                break
            start = "(" + page[-1]["message_id"]
        return ids[:count]

    def _claim_ids(self, stream: str, ids: list[str], *, min_idle_ms: int) -> list[StreamMessage]:
        if not ids:
            return []
        reply = self.client.xclaim(stream, self.group, self.name, min_idle_ms, ids)
        claimed = [StreamMessage(stream, entry_id, fields) for entry_id, fields in reply if fields]
        # Redis < 7 answers a deleted entry with no fields (7 drops it from the pending list itself).
        gone = [entry_id for entry_id, fields in reply if not fields]
        if gone:
            self.client.xack(stream, self.group, *gone)
        return self._with_deliveries(stream, claimed)

    def reclaim(self, messages: list[StreamMessage], *, count_delivery: bool) -> list[StreamMessage]:
        """Claim held entries again before retrying them; returns those still ours.

        With ``count_delivery`` the delivery count grows (a real retry);
        without it (a deferral, a pause) only the idle time is reset. Entries that
        someone acknowledged meanwhile (e.g. "retry now" in the admin) are gone.
        """
        still: list[StreamMessage] = []
        for stream in {m.stream for m in messages}:
            batch = [m for m in messages if m.stream == stream]
            ids = [m.id for m in batch]
            if count_delivery:
                reply = self.client.xclaim(stream, self.group, self.name, 0, ids)
                fresh = [StreamMessage(stream, i, f) for i, f in reply if f]
                still.extend(self._with_deliveries(stream, fresh))
            else:
                kept = set(self.client.xclaim(stream, self.group, self.name, 0, ids, justid=True))
                still.extend(m for m in batch if m.id in kept)
        return still

    def touch(self, messages: list[StreamMessage]) -> None:
        """Reset the idle time of held entries so live workers do not take them over."""
        for stream in {m.stream for m in messages}:
            ids = [m.id for m in messages if m.stream == stream]
            self.client.xclaim(stream, self.group, self.name, 0, ids, justid=True)

    # -- acknowledging -------------------------------------------------------
    def ack(self, messages: list[StreamMessage]) -> None:
        if not messages:
            return
        pipe = self.client.pipeline(transaction=False)
        for stream in {m.stream for m in messages}:
            pipe.xack(stream, self.group, *[m.id for m in messages if m.stream == stream])
        pipe.execute()

    # -- housekeeping --------------------------------------------------------
    def remove_idle_consumers(self, *, idle_ms: int, live_names: set[str]) -> list[str]:
        """Delete consumers with nothing pending that have been idle for ``idle_ms``.

        ``XGROUP DELCONSUMER`` drops a consumer's pending entries, so only
        consumers with an empty pending list and no live heartbeat are removed.
        """
        removed = []
        for stream in self.streams:
            for consumer in self.consumers(stream):
                name = consumer["name"]
                if name == self.name or name in live_names:
                    continue
                if consumer["pending"] == 0 and consumer["idle"] >= idle_ms:
                    self.client.xgroup_delconsumer(stream, self.group, name)
                    removed.append(name)
        return removed

    # -- helpers -------------------------------------------------------------
    @staticmethod
    def _messages(reply, *, deliveries: int) -> list[StreamMessage]:
        messages = []
        for stream, entries in reply or []:
            for entry_id, fields in entries:
                messages.append(StreamMessage(stream, entry_id, fields or {}, deliveries))
        return messages

    def _with_deliveries(self, stream: str, messages: list[StreamMessage]) -> list[StreamMessage]:
        """Fill in delivery counts from XPENDING (one call for the ID range)."""
        if not messages:
            return messages
        ids = sorted((m.id for m in messages), key=streams.parse_id)
        pending = self.client.xpending_range(
            stream, self.group, min=ids[0], max=ids[-1], count=len(ids) + 1000, consumername=self.name
        )
        counts = {p["message_id"]: p["times_delivered"] for p in pending}
        for message in messages:
            message.deliveries = counts.get(message.id, message.deliveries)
        return messages
