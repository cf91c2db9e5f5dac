"""``backoff_seconds``: exponential from the base, capped, half fixed and half jitter, the portal's floor.

Plain unit tests (no Redis, no database). Pinning ``random.uniform`` to either end of its
range makes the jitter's bounds exact; the unpinned test checks real draws stay inside them.
"""

from __future__ import annotations

import pytest

from crmbridge.worker import retry_schedule
from crmbridge.worker.retry_schedule import backoff_seconds
from crmbridge.worker.stream_consumer import StreamMessage


@pytest.fixture
def jitter(monkeypatch):
    """``jitter("low")`` / ``jitter("high")``: every draw at that end of its range."""

    def pin(end: str) -> None:
        monkeypatch.setattr(retry_schedule.random, "uniform", lambda a, b: a if end == "low" else b)

    return pin


@pytest.mark.parametrize(
    ("retry", "full"),
    [(0, 2.0), (1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 32.0), (6, 60.0), (30, 60.0)],
)
def test_the_delay_doubles_from_the_base_up_to_the_cap_half_of_it_fixed(jitter, retry, full):
    jitter("low")
    assert backoff_seconds(retry, base=2, cap=60) == full / 2
    jitter("high")
    assert backoff_seconds(retry, base=2, cap=60) == full


def test_the_portals_retry_after_is_a_floor_never_a_ceiling(jitter):
    jitter("high")
    assert backoff_seconds(1, base=2, cap=60, retry_after=45.0) == 45.0  # the portal's reset wins
    assert backoff_seconds(3, base=2, cap=60, retry_after=0.5) == 8.0  # a short reset does not cut the backoff
    assert backoff_seconds(3, base=2, cap=60, retry_after=0.0) == 8.0
    jitter("low")
    assert backoff_seconds(3, base=2, cap=60, retry_after=5.0) == 5.0  # above the jittered 4 s
    assert backoff_seconds(3, base=2, cap=60, retry_after=None) == 4.0


def test_real_jitter_spreads_retries_inside_half_to_all_of_the_delay():
    draws = [backoff_seconds(3, base=2, cap=60) for _ in range(500)]

    assert all(4.0 <= d <= 8.0 for d in draws)
    assert max(draws) - min(draws) > 3.0  # spread out, not all at one moment
    assert sum(draws) / len(draws) == pytest.approx(6.0, abs=0.3)


def test_dropping_a_stream_forgets_only_the_messages_held_from_it():
    """Found by mutation testing: held messages are matched by their stream, not their id."""
    schedule = retry_schedule.RetrySchedule()
    kept = StreamMessage("bitrix:operations", "1-0", {})
    for message in (kept, StreamMessage("bitrix:webhooks", "1-0", {}), StreamMessage("bitrix:webhooks", "2-0", {})):
        schedule.hold(message, delay=0, counted=False)

    schedule.drop_streams({"bitrix:webhooks", "1-0"})

    assert schedule.messages() == [kept]
