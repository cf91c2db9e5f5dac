"""The limiters' parts one by one: capacity after headroom, method blocks, penalties, counters.

Found by mutation testing (docs/mutation.md): the end-to-end limiter tests pass with many of
these changed. The in-process limiter needs no server; the Redis one uses the private Redis.
"""

from __future__ import annotations

import logging
import time

import pytest
import redis

from crmbridge.bitrix.rate_limit import InProcessRateLimiter, LeakyBucket, RedisRateLimiter
from devtools.testing.ports import free_port
from devtools.testing.redis_server import PrivateRedis

KEY = "test:ratelimit:parts"


@pytest.mark.parametrize(
    ("burst", "headroom", "capacity"), [(20, None, 18), (40, None, 36), (100, None, 95), (20, 0, 20), (20, 5, 15)]
)
def test_the_bucket_holds_the_burst_less_the_headroom(burst, headroom, capacity):
    """Default headroom: half a second at the rate (5 at 10/s), at most 10% of the burst, at least 1."""
    limiter = InProcessRateLimiter(rate=10, burst=burst, headroom=headroom)
    assert limiter.bucket.capacity == capacity
    assert [limiter._try_acquire("") for _ in range(capacity)] == [0.0] * capacity
    assert limiter._try_acquire("") == pytest.approx(0.1, abs=0.02)


def test_a_method_block_holds_that_method_only_until_the_latest_moment_given():
    limiter = InProcessRateLimiter(rate=10, burst=20)
    now = time.time()
    limiter.block_method("crm.deal.update", now + 10)
    limiter.block_method("crm.deal.update", now + 5)  # an earlier end does not shorten it

    assert limiter.method_blocked_until("crm.deal.update") == now + 10
    assert limiter._try_acquire("crm.deal.update") == pytest.approx(10, abs=0.5)
    assert limiter.method_blocked_until("crm.deal.add") is None
    assert limiter._try_acquire("crm.deal.add") == 0.0
    assert limiter._try_acquire("") == 0.0

    limiter.block_method("crm.deal.get", now - 1)
    assert limiter.method_blocked_until("crm.deal.get") is None


def test_a_penalty_fills_the_bucket_for_that_long():
    limiter = InProcessRateLimiter(rate=10, burst=20)
    limiter.penalize(5)

    assert limiter._try_acquire("") == pytest.approx(5.1, abs=0.3)


def test_acquire_counts_every_wait_and_adds_up_the_time():
    limiter = InProcessRateLimiter(rate=20, burst=2, headroom=0)
    assert [limiter.acquire(), limiter.acquire()] == [0.0, 0.0]
    assert (limiter.waits, limiter.waited_seconds) == (0, 0.0)

    first, second = limiter.acquire(), limiter.acquire()

    assert first > 0.03 and second > 0.03  # 1/20 s each
    assert limiter.waits == 2
    assert limiter.waited_seconds == pytest.approx(first + second)


@pytest.mark.parametrize(("rate", "burst"), [(0, 5), (-1, 5), (10, 0)])
def test_the_shared_limiter_refuses_a_rate_or_burst_it_cannot_keep(redis_client, rate, burst):
    with pytest.raises(ValueError, match=r"^rate must be positive and burst at least 1$"):
        RedisRateLimiter(redis_client, rate=rate, burst=burst, key=KEY)


@pytest.mark.parametrize(("rate", "burst", "capacity"), [(0.5, 1, 1.0), (10, 20, 18.0), (10, 2, 1.0)])
def test_the_shared_bucket_holds_at_least_one_request(redis_client, rate, burst, capacity):
    assert RedisRateLimiter(redis_client, rate=rate, burst=burst, key=KEY).capacity == capacity


def test_a_shared_method_block_lives_in_redis_exactly_until_its_end(redis_client):
    limiter = RedisRateLimiter(redis_client, rate=10, burst=20, key=KEY)
    other_process = RedisRateLimiter(redis_client, rate=10, burst=20, key=KEY)
    until = time.time() + 30

    limiter.block_method("crm.deal.update", until)
    limiter.block_method("crm.deal.get", time.time() - 1)  # over already: nothing stored

    assert other_process.method_blocked_until("crm.deal.update") == pytest.approx(until, abs=1e-5)
    assert redis_client.pexpiretime(f"{KEY}:method:crm.deal.update") == int(until * 1000)
    assert not redis_client.exists(f"{KEY}:method:crm.deal.get")
    assert other_process.method_blocked_until("crm.deal.get") is None
    redis_client.delete(f"{KEY}:method:crm.deal.update")


def test_a_request_without_a_method_name_is_held_by_the_bucket_alone():
    """Found by mutation testing: ``acquire()`` with no method never looks at method blocks."""
    limiter = InProcessRateLimiter(rate=10, burst=20)
    limiter.block_method("", time.time() + 60)

    assert limiter._try_acquire("") == 0.0


class StandInClock:
    """``time`` for ``rate_limit``: a wall clock that moves only when told."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


def test_a_method_block_ends_at_its_moment_and_is_then_forgotten(monkeypatch):
    """Found by mutation testing: at ``until`` itself the method is free (the portal's ``operating_reset_at``),
    and the ended block leaves the map (it does not grow with every method ever blocked)."""
    from crmbridge.bitrix import rate_limit

    clock = StandInClock(1000.0)
    monkeypatch.setattr(rate_limit, "time", clock)
    limiter = InProcessRateLimiter(rate=10, burst=20)
    limiter.block_method("crm.deal.update", 1010.0)

    clock.now = 1009.999
    assert limiter.method_blocked_until("crm.deal.update") == 1010.0
    clock.now = 1010.0
    assert limiter.method_blocked_until("crm.deal.update") is None
    assert limiter._method_blocks == {}


def test_a_bucket_holds_at_least_one_request():
    now = [0.0]
    bucket = LeakyBucket(rate=2, capacity=0.5, clock=lambda: now[0])

    assert (bucket.capacity, bucket.try_add(), bucket.try_add()) == (1.0, 0.0, 0.5)


def test_without_redis_one_request_at_a_time_at_half_the_rate_and_method_blocks_hold():
    """Found by mutation testing: the stand-in's bucket holds one request (no burst), refills at half the rate,
    and a method blocked meanwhile stays blocked in it."""
    limiter = RedisRateLimiter(redis.Redis(port=free_port(), socket_connect_timeout=0.2), rate=100, burst=5, key=KEY)
    limiter.block_method("crm.deal.update", time.time() + 60)

    assert limiter._try_acquire("crm.deal.add") == 0.0
    assert limiter._try_acquire("crm.deal.add") == pytest.approx(0.02, abs=0.005)
    assert limiter._try_acquire("crm.deal.update") == pytest.approx(60, abs=1)


class StandInMonotonic(StandInClock):
    """``time`` for ``rate_limit`` with a ``monotonic`` that moves only when told (``time()`` is real)."""

    def monotonic(self) -> float:
        return self.now

    @staticmethod
    def time() -> float:
        return time.time()


@pytest.fixture
def own_redis():
    """A Redis this test may stop and start again."""
    server = PrivateRedis().start()
    yield server
    server.cleanup()


def test_redis_is_tried_again_after_five_seconds_and_its_return_is_logged(own_redis, monkeypatch, caplog):
    from crmbridge.bitrix import rate_limit

    clock = StandInMonotonic(100.0)
    monkeypatch.setattr(rate_limit, "time", clock)
    client = own_redis.client()
    limiter = RedisRateLimiter(client, rate=100, burst=5, key=KEY, headroom=0)
    with caplog.at_level(logging.WARNING, logger="crmbridge.bitrix.rate_limit"):
        assert limiter._try_acquire("") == 0.0  # shared
        own_redis.stop()
        limiter._try_acquire("")  # fails over at 100.0
        own_redis.start()
        client.delete(KEY)
        clock.now = 104.999
        limiter._try_acquire("")  # still the stand-in: Redis is not asked
        assert not client.exists(KEY)
        clock.now = 105.0
        limiter._try_acquire("")  # asked again: back
        assert client.exists(KEY)
        limiter._try_acquire("")

    assert [r.getMessage() for r in caplog.records] == [
        "Rate limiter: Redis unreachable (ConnectionError); limiting this process alone to 50 requests/s",
        "Rate limiter: Redis is back; the shared limit applies again",
    ]
    assert [r.levelno for r in caplog.records] == [logging.WARNING] * 2
