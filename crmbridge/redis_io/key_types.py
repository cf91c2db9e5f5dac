"""A project key holding the wrong kind of value (``SET bitrix:webhooks x``): found, named, with the fix.

Redis answers any stream command on such a key with ``WRONGTYPE``. That is not
"Redis is unreachable": Redis answers, one key is in the way. The worker stops
consuming that stream alone (``StreamConsumer``), and the status endpoints, the
dashboard and ``bitrix_doctor`` name the key, its actual type and what to do.

The fix moves the key aside (``RENAME``) rather than deleting it: someone put a
value there, and it may be worth reading before it goes. Once the key is free,
the worker creates the stream and its group again by itself (``MKSTREAM``).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis


def is_wrong_type(exc: BaseException) -> bool:
    return isinstance(exc, redis.ResponseError) and str(exc).startswith("WRONGTYPE")


@dataclass(frozen=True)
class WrongType:
    key: str
    actual: str  # what TYPE says: "string", "hash", "list", ...
    expected: str = "stream"

    def describe(self) -> str:
        return f"Redis key {self.key} is a {self.actual}, not a {self.expected}"

    def fix(self, cli: str = "redis-cli") -> str:
        """What to run; ``cli`` is the redis-cli command with its connection options."""
        return (
            f"look at it: {cli} TYPE {self.key}; move it aside: {cli} RENAME {self.key} {self.key}:wrongtype "
            f"(or {cli} DEL {self.key} if it is junk); the worker then creates the {self.expected} and its "
            "consumer group again by itself"
        )

    def as_dict(self, cli: str = "redis-cli") -> dict:
        return {"key": self.key, "type": self.actual, "expected": self.expected, "fix": self.fix(cli)}


def wrong_type_keys(client: redis.Redis, keys: list[str], expected: str = "stream") -> list[WrongType]:
    """The ``keys`` that exist with another type than ``expected`` (one pipelined ``TYPE`` each)."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
    found = []
    for key, actual in zip(keys, pipe.execute(), strict=True):
        actual = actual.decode() if isinstance(actual, bytes) else str(actual)
        if actual not in ("none", expected):
            found.append(WrongType(key, actual, expected))
    return found
