"""Record locks against a real Redis: one owner at a time, renewal only while still owned."""

from __future__ import annotations

from crmbridge.worker.record_locks import RecordLocks, lock_key


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
