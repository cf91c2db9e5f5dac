"""The shared leaky bucket: in Redis, across processes, in step with the portal's own limit."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from crmbridge.bitrix.rate_limit import LeakyBucket, RedisRateLimiter, default_headroom
from devtools.testing.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
KEY = "test:shared-limit"


def test_a_burst_passes_at_once_then_the_rate_applies(redis_client):
    limiter = RedisRateLimiter(redis_client, rate=20, burst=5, key=KEY, headroom=0)

    bursts = [limiter.acquire() for _ in range(5)]
    waited = limiter.acquire()

    assert bursts == [0.0] * 5
    assert 0.02 < waited < 0.2
    assert (limiter.waits, limiter.waited_seconds) == (1, waited)


def test_two_limiters_on_one_key_share_the_bucket(redis_client):
    first, second = (RedisRateLimiter(redis_client, rate=10, burst=3, key=KEY, headroom=0) for _ in range(2))

    first.acquire(), second.acquire(), first.acquire()

    assert second.acquire() > 0.05


@pytest.mark.parametrize(("rate", "burst", "headroom"), [(2, 50, 1.0), (5, 250, 2.5), (20, 20, 2.0), (5, 5, 1.0)])
def test_headroom_absorbs_half_a_second_of_jitter_within_reason(rate, burst, headroom):
    assert default_headroom(rate, burst) == headroom


def test_penalize_holds_everyone_back(redis_client):
    limiter = RedisRateLimiter(redis_client, rate=100, burst=10, key=KEY)
    other = RedisRateLimiter(redis_client, rate=100, burst=10, key=KEY)

    limiter.penalize(0.3)

    assert 0.25 < other.acquire() < 0.6


def test_block_method_holds_that_method_only(redis_client):
    limiter = RedisRateLimiter(redis_client, rate=100, burst=10, key=KEY)
    limiter.block_method("crm.deal.add", time.time() + 0.3)
    other = RedisRateLimiter(redis_client, rate=100, burst=10, key=KEY)

    assert other.method_blocked_until("crm.deal.add") == pytest.approx(time.time() + 0.3, abs=0.1)
    assert other.method_blocked_until("crm.contact.add") is None
    assert other.acquire("crm.contact.add") == 0.0
    assert 0.2 < other.acquire("crm.deal.add") < 0.6
    assert other.method_blocked_until("crm.deal.add") is None


def test_unreachable_redis_falls_back_and_warns_once(caplog):
    down = redis.Redis(port=free_port(), socket_connect_timeout=0.2)
    limiter = RedisRateLimiter(down, rate=100, burst=5, key=KEY)

    with caplog.at_level(logging.WARNING, logger="crmbridge.bitrix.rate_limit"):
        waits = [limiter.acquire("crm.deal.add") for _ in range(4)]
        limiter.penalize(0.01)
        limiter.block_method("crm.deal.update", time.time() + 60)

    assert sum(waits) < 0.5  # slower (half the rate, no burst) but going
    assert limiter.method_blocked_until("crm.deal.update") is not None  # remembered in-process
    assert [r.getMessage() for r in caplog.records] == [
        "Rate limiter: Redis unreachable (ConnectionError); limiting this process alone to 50 requests/s"
    ]


def test_leaky_bucket_drains_at_its_rate():
    now = [0.0]
    bucket = LeakyBucket(rate=2, capacity=3, clock=lambda: now[0])

    assert [bucket.try_add() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_add() == pytest.approx(0.5)
    now[0] = 0.5
    assert bucket.try_add() == 0.0
    bucket.fill_until(2.0)
    now[0] = 1.0
    assert bucket.try_add() == pytest.approx(1.5)


def test_leaky_bucket_after_a_partial_drain_holds_exactly_what_the_rate_let_out():
    now = [0.0]
    bucket = LeakyBucket(rate=2, capacity=4, clock=lambda: now[0])
    assert [bucket.try_add() for _ in range(4)] == [0.0] * 4  # full: level 4

    now[0] = 0.75  # 1.5 requests drained: level 2.5, room for one more and half of the next
    assert bucket.try_add() == 0.0  # level 3.5
    assert bucket.try_add() == pytest.approx(0.25)  # (3.5 + 1 - 4) / 2: refused, nothing added
    assert bucket.try_add() == pytest.approx(0.25)

    now[0] = 1.0  # level 3.0
    assert bucket.try_add() == 0.0  # level 4.0
    assert bucket.try_add() == pytest.approx(0.5)  # one whole request at 2/s


# -- several processes ------------------------------------------------------------------
def limiter_process(redis_url: str, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "tests.bitrix.limiter_process", "--redis-url", redis_url, "--key", KEY, *args]
    return subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def result_of(process: subprocess.Popen) -> dict:
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    return json.loads(output.strip().splitlines()[-1])


@pytest.mark.slow  # a separate process: run once, on SQLite (see test.sh)
def test_two_processes_stay_under_the_portal_limit_together(sandbox, redis_url):
    sandbox.set_limit(rate=5, burst=5)
    start_at = str(time.time() + 1.5)  # both start together, after their imports
    args = ("--rate", "5", "--burst", "5", "--start-at", start_at, "--webhook", sandbox.webhook_url, "--seconds", "3")

    results = [result_of(p) for p in [limiter_process(redis_url, *args) for _ in range(2)]]

    stats, total = sandbox.stats(), sum(r["ok"] for r in results)
    assert stats["rate_limited"] == 0 and all(r["limited"] == 0 for r in results), results
    assert all(r["ok"] >= 3 for r in results), results  # both made progress
    assert 12 <= total <= 5 + 5 * 3 + 1, results  # about the portal's ceiling for 3 s, never above it


@pytest.mark.slow  # a separate process: run once, on SQLite (see test.sh)
def test_penalize_in_one_process_makes_another_wait(redis_client, redis_url):
    process = limiter_process(redis_url, "--rate", "100", "--burst", "10", "--acquire-once")
    assert json.loads(process.stdout.readline()) == {"ready": True}

    RedisRateLimiter(redis_client, rate=100, burst=10, key=KEY).penalize(1.0)
    process.stdin.write("go\n")
    process.stdin.flush()

    assert 0.7 < result_of(process)["waited"] < 1.3
