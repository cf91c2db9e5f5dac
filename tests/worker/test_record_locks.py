"""Record locks against a real Redis: one owner at a time, renewal only while still owned."""

from __future__ import annotations

import logging

from crmbridge.redis_io import telemetry
from crmbridge.worker.heartbeat import Heartbeat
from crmbridge.worker.record_locks import RecordLocks, lock_key
from crmbridge.worker.runner import Worker
from tests.worker.helpers import fast_config


def test_a_lock_is_exclusive_and_renewed_only_by_its_owner(redis_client):
    first = RecordLocks(redis_client, owner="w1", lease_ms=60_000)
    second = RecordLocks(redis_client, owner="w2", lease_ms=60_000)

    assert first.acquire([("deal", 1), ("contact", 2)]) == {("deal", 1), ("contact", 2)}
    assert second.acquire([("deal", 1), ("deal", 3)]) == {("deal", 3)}

    redis_client.delete(lock_key("deal", 1))  # the lease ran out...
    assert second.acquire([("deal", 1)]) == {("deal", 1)}  # ...and another worker took the record

    assert first.renew([("deal", 1), ("contact", 2)]) == {("contact", 2)}
    assert redis_client.get(lock_key("deal", 1)) == "w2"
    first.release({("deal", 1), ("contact", 2)})
    assert redis_client.get(lock_key("deal", 1)) == "w2"  # release never frees another's lock
    assert redis_client.get(lock_key("contact", 2)) is None


def test_the_locks_of_a_dead_owner_are_taken_over_at_once_and_logged(redis_client, caplog):
    """Found by mutation testing (``_take_from_dead`` had no fast test): only a dead owner's lock is
    taken, with a full lease, and each takeover is named in the log."""
    RecordLocks(redis_client, owner="dead-1", lease_ms=60_000).acquire([("deal", 1), ("contact", 2)])
    RecordLocks(redis_client, owner="alive-1", lease_ms=60_000).acquire([("deal", 3)])
    heir = RecordLocks(redis_client, owner="heir", lease_ms=5_000, dead_owners=lambda: {"dead-1"})

    with caplog.at_level(logging.WARNING, logger="crmbridge.worker"):
        taken = heir.acquire([("deal", 1), ("contact", 2), ("deal", 3)])

    assert taken == {("deal", 1), ("contact", 2)}
    assert [redis_client.get(lock_key(*r)) for r in [("deal", 1), ("contact", 2), ("deal", 3)]] == [
        "heir", "heir", "alive-1",
    ]  # fmt: skip
    assert 0 < redis_client.pttl(lock_key("deal", 1)) <= 5_000  # the heir's lease, not the dead owner's
    assert sorted(r.getMessage() for r in caplog.records) == [
        "[WORKER] Took over the lock on contact 2 from stopped consumer dead-1",
        "[WORKER] Took over the lock on deal 1 from stopped consumer dead-1",
    ]


def test_a_dead_owners_lock_that_changed_hands_meanwhile_is_not_taken(redis_client, caplog):
    """The takeover is a compare-and-set: another worker that took the lock first keeps it."""
    RecordLocks(redis_client, owner="dead-1", lease_ms=60_000).acquire([("deal", 1)])

    def dead_owners() -> set[str]:  # read after the owners: another heir is quicker in between
        redis_client.set(lock_key("deal", 1), "quicker")
        return {"dead-1"}

    heir = RecordLocks(redis_client, owner="heir", lease_ms=60_000, dead_owners=dead_owners)
    with caplog.at_level(logging.WARNING, logger="crmbridge.worker"):
        assert heir.acquire([("deal", 1)]) == set()
    assert redis_client.get(lock_key("deal", 1)) == "quicker"
    assert not caplog.records


def test_a_worker_takes_over_the_locks_of_a_worker_that_stopped(sandbox, redis_client, db):
    """Found by mutation testing (``Worker._sync_batch``): the worker's locks know the stopped workers."""
    Heartbeat(redis_client, "stopped", {}, 1.0).beat(force=True)
    telemetry.remove_heartbeat(redis_client, "stopped")
    RecordLocks(redis_client, owner="stopped", lease_ms=60_000).acquire([("deal", 1)])
    worker = Worker(fast_config(), name="heir")

    locks = worker._sync_batch(check_mapping=False).locks

    assert locks.acquire([("deal", 1)]) == {("deal", 1)}
    assert redis_client.get(lock_key("deal", 1)) == "heir"
