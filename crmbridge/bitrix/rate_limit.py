"""The rate limit shared by every worker process on every host.

The portal counts all our requests in one leaky bucket (standard plans: 2 per
second, burst 50): each request adds 1, the level drains at the rate, and past
the burst the portal answers 503 ``QUERY_LIMIT_EXCEEDED``. A limit per process
cannot respect that, so ``RedisRateLimiter`` keeps the same bucket in Redis and
updates it with one Lua script, using Redis ``TIME`` as the clock so that hosts
with skewed clocks still agree.

The bucket is kept slightly smaller than the portal's (``headroom``): a request
granted here arrives at the portal a few milliseconds later, and a little room
absorbs that jitter instead of turning it into 503s.

If Redis is unreachable the limiter falls back to a conservative in-process
bucket (half the rate, no burst) and says so once in the log: the worker keeps
going, more slowly, instead of crashing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import redis
from django.conf import settings

logger = logging.getLogger("crmbridge.bitrix.rate_limit")

T = TypeVar("T")

# Sleep at most this long at once, so that a lifted penalty is seen soon.
MAX_SLEEP_SECONDS = 1.0
# After a Redis failure, use the in-process bucket this long before trying Redis again.
REDIS_RETRY_SECONDS = 5.0


class RateLimiter(Protocol):
    waits: int
    waited_seconds: float

    def acquire(self, method: str = "") -> float: ...
    def penalize(self, seconds: float) -> None: ...
    def block_method(self, method: str, until_unix: float) -> None: ...
    def method_blocked_until(self, method: str) -> float | None: ...


def default_headroom(rate: float, burst: int) -> float:
    """Room left unused in the bucket: half a second of jitter, at most 10% of the burst, at least 1."""
    return max(1.0, min(burst * 0.1, rate * 0.5))


class LeakyBucket:
    """The portal's bucket, in memory: ``try_add`` adds one request if it fits."""

    def __init__(self, rate: float, capacity: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(1.0, capacity)
        self._clock = clock
        self._level = 0.0
        self._updated = clock()
        self._lock = threading.Lock()

    def try_add(self) -> float:
        """Add one request and return 0, or return the seconds until one fits (adding nothing)."""
        with self._lock:
            now = self._clock()
            self._level = max(0.0, self._level - max(0.0, now - self._updated) * self.rate)
            self._updated = max(self._updated, now)
            if self._level + 1 > self.capacity:
                return (self._level + 1 - self.capacity) / self.rate + max(0.0, self._updated - now)
            self._level += 1
            return 0.0

    def fill_until(self, moment: float) -> None:
        """The bucket is full and stays full until ``moment`` (on the bucket's clock)."""
        with self._lock:
            self._level = self.capacity
            self._updated = max(self._updated, moment)


class _WaitingLimiter:
    """``acquire`` as a loop over ``_try_acquire`` (0 = granted, else seconds to wait)."""

    def __init__(self) -> None:
        self.waits = 0
        self.waited_seconds = 0.0

    def _try_acquire(self, method: str) -> float:
        raise NotImplementedError

    def acquire(self, method: str = "") -> float:
        """Block until one request may be sent; return the seconds waited."""
        started = time.monotonic()
        slept = False
        while (wait := self._try_acquire(method)) > 0:
            slept = True
            time.sleep(min(wait, MAX_SLEEP_SECONDS))
        if not slept:
            return 0.0
        waited = time.monotonic() - started
        self.waits += 1
        self.waited_seconds += waited
        return waited


class InProcessRateLimiter(_WaitingLimiter):
    """The same limiter for one process only: Redis's stand-in, and for scripts and tests."""

    def __init__(self, *, rate: float, burst: int, headroom: float | None = None) -> None:
        super().__init__()
        spare = default_headroom(rate, burst) if headroom is None else headroom
        self.bucket = LeakyBucket(rate, burst - spare)
        self._method_blocks: dict[str, float] = {}

    def _try_acquire(self, method: str) -> float:
        blocked = self.method_blocked_until(method) if method else None
        if blocked is not None:
            return blocked - time.time()
        return self.bucket.try_add()

    def penalize(self, seconds: float) -> None:
        self.bucket.fill_until(time.monotonic() + seconds)

    def block_method(self, method: str, until_unix: float) -> None:
        self._method_blocks[method] = max(until_unix, self._method_blocks.get(method, 0.0))

    def method_blocked_until(self, method: str) -> float | None:
        until = self._method_blocks.get(method)
        if until is None or until <= time.time():
            self._method_blocks.pop(method, None)
            return None
        return until


# KEYS: bucket hash, penalty, method block. ARGV: rate, capacity.
# Returns "0" when granted, else the seconds to wait (as text: Lua numbers
# returned to Redis are truncated to integers).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local wait = 0
local penalty = tonumber(redis.call('GET', KEYS[2]) or '0')
if penalty > now then wait = penalty - now end
local blocked = tonumber(redis.call('GET', KEYS[3]) or '0')
if blocked > now then wait = math.max(wait, blocked - now) end
if wait > 0 then return string.format('%.6f', wait) end
local state = redis.call('HMGET', KEYS[1], 'level', 'ts')
local level = tonumber(state[1]) or 0
local ts = tonumber(state[2]) or now
level = math.max(0, level - math.max(0, now - ts) * rate)
if level + 1 > capacity then
  return string.format('%.6f', (level + 1 - capacity) / rate + math.max(0, ts - now))
end
redis.call('HSET', KEYS[1], 'level', string.format('%.6f', level + 1), 'ts', string.format('%.6f', math.max(ts, now)))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 60000)
return '0'
"""

# KEYS: bucket hash, penalty. ARGV: seconds, capacity, rate.
# The portal said its bucket is full: nobody sends until the penalty ends, and
# the bucket counts as full from then on (it drains from that moment).
_PENALIZE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local seconds = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local finish = now + seconds
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if finish > current then
  redis.call('SET', KEYS[2], string.format('%.6f', finish), 'PX', math.ceil(seconds * 1000) + 1000)
else
  finish = current
end
redis.call('HSET', KEYS[1], 'level', string.format('%.6f', capacity), 'ts', string.format('%.6f', finish))
redis.call('PEXPIRE', KEYS[1], math.ceil((finish - now + capacity / rate) * 1000) + 60000)
return string.format('%.6f', finish)
"""


class RedisRateLimiter(_WaitingLimiter):
    """A leaky bucket shared through Redis by every process that uses the same ``key``."""

    def __init__(self, client: redis.Redis, *, rate: float, burst: int, key: str, headroom: float | None = None):
        super().__init__()
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.client = client
        self.rate = rate
        self.burst = burst
        self.key = key
        spare = default_headroom(rate, burst) if headroom is None else headroom
        self.capacity = max(1.0, burst - spare)
        self._acquire_script = client.register_script(_ACQUIRE)
        self._penalize_script = client.register_script(_PENALIZE)
        self._fallback = InProcessRateLimiter(rate=rate / 2, burst=1, headroom=0)
        self._redis_failed_at: float | None = None

    @classmethod
    def from_settings(cls) -> RedisRateLimiter:
        from crmbridge.redis_io import streams
        from crmbridge.redis_io.connection import get_redis

        return cls(
            get_redis(),
            rate=settings.BITRIX_RATE_LIMIT_PER_SECOND,
            burst=settings.BITRIX_RATE_LIMIT_BURST,
            key=streams.key("ratelimit"),
        )

    def __repr__(self) -> str:
        return f"RedisRateLimiter(rate={self.rate}, burst={self.burst}, key={self.key!r})"

    # -- the protocol ----------------------------------------------------------
    def _try_acquire(self, method: str) -> float:
        keys = [self.key, self._penalty_key, self._method_key(method)]
        wait = self._with_redis(lambda: float(self._acquire_script(keys=keys, args=[self.rate, self.capacity])))
        return self._fallback._try_acquire(method) if wait is None else wait

    def penalize(self, seconds: float) -> None:
        """After a 503 ``QUERY_LIMIT_EXCEEDED``: every process waits ``seconds``, then goes on at the rate."""
        self._fallback.penalize(seconds)
        keys = [self.key, self._penalty_key]
        self._with_redis(lambda: self._penalize_script(keys=keys, args=[seconds, self.capacity, self.rate]))

    def block_method(self, method: str, until_unix: float) -> None:
        """After a 429 ``OPERATION_TIME_LIMIT``: nobody calls ``method`` before ``until_unix``."""
        self._fallback.block_method(method, until_unix)
        if until_unix > time.time():
            value = f"{until_unix:.6f}"
            self._with_redis(lambda: self.client.set(self._method_key(method), value, pxat=int(until_unix * 1000)))

    def method_blocked_until(self, method: str) -> float | None:
        raw = self._with_redis(lambda: self.client.get(self._method_key(method)) or "")
        if raw is None:  # Redis unreachable
            return self._fallback.method_blocked_until(method)
        until = float(raw or 0)
        return until if until > time.time() else None

    # -- Redis, or the in-process stand-in ---------------------------------------
    @property
    def _penalty_key(self) -> str:
        return f"{self.key}:penalty"

    def _method_key(self, method: str) -> str:
        return f"{self.key}:method:{method}"

    def _with_redis(self, operation: Callable[[], T]) -> T | None:
        """Run ``operation``; ``None`` when Redis is unreachable (then the stand-in decides)."""
        if self._redis_failed_at is not None and time.monotonic() - self._redis_failed_at < REDIS_RETRY_SECONDS:
            return None
        try:
            result = operation()
        except redis.RedisError as exc:
            if self._redis_failed_at is None:
                logger.warning(
                    "Rate limiter: Redis unreachable (%s); limiting this process alone to %.2g requests/s",
                    type(exc).__name__,
                    self._fallback.bucket.rate,
                )
            self._redis_failed_at = time.monotonic()
            return None
        if self._redis_failed_at is not None:
            logger.warning("Rate limiter: Redis is back; the shared limit applies again")
            self._redis_failed_at = None
        return result
