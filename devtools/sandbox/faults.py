"""Trouble the sandbox can be told to make, to test what a client does about it.

Shares are probabilities per REST request (0.0 .. 1.0), drawn from a seeded
random generator so that a test can repeat a run exactly.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass, field, fields

# auth_error -> HTTP status, as the portal answers them.
AUTH_ERRORS = {
    "NO_AUTH_FOUND": 401,
    "expired_token": 401,
    "invalid_token": 401,
    "INVALID_CREDENTIALS": 403,
    "insufficient_scope": 403,
    "ACCESS_DENIED": 403,
}


@dataclass
class Faults:
    error_500_share: float = 0.0  # 500 INTERNAL_SERVER_ERROR
    error_503_share: float = 0.0  # 503 QUERY_LIMIT_EXCEEDED, as if another app spent the budget
    html_share: float = 0.0  # 502 with an HTML page, as from a proxy
    timeout_share: float = 0.0  # the request is applied, then the answer waits timeout_seconds
    timeout_seconds: float = 35.0  # longer than the client's 30 s read timeout
    latency_ms: float = 0.0  # added to every request
    auth_error: str | None = None  # e.g. "expired_token": every request fails with it
    # method -> Unix time until which it answers 429 OPERATION_TIME_LIMIT
    operation_limits: dict[str, float] = field(default_factory=dict)
    # methods the webhook may not call (its user lacks the rights): 403 insufficient_scope
    denied_methods: list[str] = field(default_factory=list)
    seed: int | None = None


class FaultInjector:
    """Holds the current ``Faults`` and draws the random decisions, thread-safely."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.faults = Faults()
        self._random = random.Random()

    def configure(self, **changes) -> Faults:
        """Change some settings; ``operation_limits`` takes seconds from now (0 or None lifts a block)."""
        known = {f.name for f in fields(Faults)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}; known: {sorted(known)}")
        if changes.get("auth_error") not in (None, *AUTH_ERRORS):
            raise ValueError(f"auth_error must be one of {sorted(AUTH_ERRORS)} or null")
        with self._lock:
            for name, value in changes.items():
                if name == "operation_limits":
                    value = _blocks_from_now(value or {})
                elif name == "denied_methods":
                    value = [str(method).lower() for method in value or []]
                elif name.endswith(("_share", "_seconds", "_ms")):
                    value = float(value)
                setattr(self.faults, name, value)
            if "seed" in changes:
                self._random = random.Random(changes["seed"])
            return self.snapshot()

    def reset(self) -> None:
        with self._lock:
            self.faults = Faults()
            self._random = random.Random()

    def snapshot(self) -> Faults:
        faults = asdict(self.faults)
        return Faults(**{**faults, "operation_limits": dict(faults["operation_limits"])})

    def roll(self, share: float) -> bool:
        if share <= 0:
            return False
        with self._lock:
            return self._random.random() < share

    def method_blocked_until(self, method: str) -> float | None:
        until = self.faults.operation_limits.get(method)
        return until if until is not None and until > time.time() else None


def _blocks_from_now(limits: dict) -> dict[str, float]:
    now = time.time()
    return {method.lower(): now + float(seconds) for method, seconds in limits.items() if seconds}
