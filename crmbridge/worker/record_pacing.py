"""How long a record just synced waits before its next update: longer while it stays hot.

Publish-time coalescing (``crmbridge.publishing.coalescing``) keeps one unacknowledged
message per record; this decides when that message may be synced again. A record
synced less than its interval ago waits, its message pending, and every change
meanwhile folds into it.

The interval starts at ``record_interval_seconds`` (``BITRIX_WORKER_RECORD_INTERVAL``)
and doubles each time the record comes back before the previous interval has
ended plus one base interval ("hot"), up to ``record_interval_max_seconds``
(``BITRIX_WORKER_RECORD_INTERVAL_MAX``). A record that stays quiet for longer
starts again at the base interval. So:

- one edit, or edits far apart, reach the portal at once (no entry, no wait);
- a burst costs updates at 0, 1, 3, 7, 15 s, then one per maximum interval:
  300 PUTs at 20/s (15 s) cost about 6 updates, and the same 300 PUTs spread over
  100 s (a slower web tier, or a client that edits for minutes) about 16 with the
  default 10 s maximum, instead of one per base interval (about 100);
- the portal never lags a hot record by more than the maximum interval, and its
  final state arrives at most that long after its last edit.

Why doubling and not a debounce ("sync after N quiet seconds"): a debounce delays
every single edit by N; doubling delays nothing that is not part of a burst.

The state is this worker's own memory: another worker (or a restart) starts
the record again at the base interval, which costs a few updates, never a loss.
"""

from __future__ import annotations

Key = tuple[str, int]

# Forget records beyond this many (only those whose wait is over, so nothing changes).
PRUNE_ABOVE = 10_000


class RecordPacer:
    """Per-record intervals of one worker; ``wait`` before a sync, ``synced`` after it."""

    def __init__(self, base_seconds: float, max_seconds: float) -> None:
        self.base = max(base_seconds, 0.0)
        self.cap = max(max_seconds, self.base)  # a maximum below the base: no growth
        self._last: dict[Key, tuple[float, int]] = {}  # record -> (synced at, doublings)

    def interval(self, streak: int) -> float:
        """The wait after a sync that ended a run of ``streak`` hot syncs."""
        return min(self.cap, self.base * 2 ** min(streak, 32))

    def wait(self, key: Key, now: float) -> float:
        """Seconds before ``key`` may be synced again (0: now)."""
        last = self._last.get(key)
        if last is None:
            return 0.0
        synced_at, streak = last
        return max(0.0, synced_at + self.interval(streak) - now)

    def synced(self, key: Key, now: float) -> None:
        """``key`` was synced at ``now``: a hot record's next interval doubles, a quiet one's resets."""
        if self.base <= 0:
            return
        last = self._last.get(key)
        streak = last[1] + 1 if last is not None and self._hot(last, now) else 0
        self._last[key] = (now, streak)
        if len(self._last) > PRUNE_ABOVE:
            self._last = {k: v for k, v in self._last.items() if self._hot(v, now)}

    def _hot(self, last: tuple[float, int], now: float) -> bool:
        synced_at, streak = last
        return now - synced_at < self.interval(streak) + self.base

    def __len__(self) -> int:
        return len(self._last)
