"""What the sandbox received and did, for tests and benchmarks to check."""

from __future__ import annotations

import threading
from collections import Counter


class SandboxStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests = 0  # HTTP requests to /rest/, whatever their outcome
            self.rate_limited = 0  # answered 503 by the leaky bucket (not injected faults)
            self.by_method: Counter[str] = Counter()  # HTTP requests by method ("batch" is one)
            self.commands: Counter[str] = Counter()  # methods executed, batch commands included
            self.errors: Counter[str] = Counter()  # error codes answered, batch commands included
            self.faults: Counter[str] = Counter()  # injected faults by kind
            self.events: Counter[str] = Counter()  # outbound events: sent / failed

    def count(self, counter: str, key: str | None = None, n: int = 1) -> None:
        with self._lock:
            if key is None:
                setattr(self, counter, getattr(self, counter) + n)
            else:
                getattr(self, counter)[key] += n

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "requests": self.requests,
                "rate_limited": self.rate_limited,
                "by_method": dict(self.by_method),
                "operations": sum(self.commands.values()),
                "commands_by_method": dict(self.commands),
                "errors": dict(self.errors),
                "faults": dict(self.faults),
                "events": {"sent": self.events["sent"], "failed": self.events["failed"]},
            }
