"""Backoff with jitter, and the messages a worker holds until they are due again.

Held messages stay in Redis's pending list under this consumer the whole time:
if the worker dies, another takes them over (by heartbeat, see chores). The schedule in
memory only decides *when* this worker tries them again.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from crmbridge.worker.stream_consumer import StreamMessage


def backoff_seconds(retry: int, *, base: float, cap: float, retry_after: float | None = None) -> float:
    """Exponential delay (base, 2 base, 4 base ... up to cap) with "equal jitter".

    Half the delay is fixed and half random, so retries of many messages that
    failed together spread out instead of hitting the portal at once. A
    ``retry_after`` from the portal (rate limit reset) is a floor.
    """
    delay = min(cap, base * (2 ** max(retry - 1, 0)))
    delay = delay / 2 + random.uniform(0, delay / 2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


@dataclass
class Held:
    message: StreamMessage
    due: float
    counted: bool  # True: the next try is a retry (delivery count grows)


class RetrySchedule:
    def __init__(self) -> None:
        self._held: dict[tuple[str, str], Held] = {}

    def hold(self, message: StreamMessage, *, delay: float, counted: bool) -> None:
        self._held[(message.stream, message.id)] = Held(message, time.monotonic() + delay, counted)

    def pop_due(self, limit: int) -> list[Held]:
        now = time.monotonic()
        due = sorted((h for h in self._held.values() if h.due <= now), key=lambda h: h.due)[:limit]
        for held in due:
            del self._held[(held.message.stream, held.message.id)]
        return due

    def seconds_until_next(self) -> float | None:
        if not self._held:
            return None
        return max(0.0, min(h.due for h in self._held.values()) - time.monotonic())

    def messages(self) -> list[StreamMessage]:
        return [h.message for h in self._held.values()]

    def drop_streams(self, names) -> None:
        """Forget what is held from these streams (their key was replaced: the entries are gone)."""
        for key in [key for key in self._held if key[0] in names]:
            del self._held[key]

    def make_all_due(self) -> None:
        for held in self._held.values():
            held.due = 0.0

    def __len__(self) -> int:
        return len(self._held)
