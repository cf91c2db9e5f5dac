"""One worker per record at a time, on every host: short leases in Redis.

Two workers can hold messages for the same record at the same moment (a
duplicate message, a takeover). Without a lock both could send ``add`` and
Bitrix, which has no idempotency key, would keep two deals. A worker that
cannot take a record's lock leaves its messages pending and tries again soon.
"""

from __future__ import annotations

import redis

from crmbridge.redis_io import streams

_RENEW = """
local kept = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    kept[#kept + 1] = i
  end
end
return kept
"""

_RELEASE = """
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 1
"""


def lock_key(entity: str, local_id: int) -> str:
    return streams.key(f"lock:{entity}:{local_id}")


class RecordLocks:
    def __init__(self, client: redis.Redis, *, owner: str, lease_ms: int) -> None:
        self.client = client
        self.owner = owner
        self.lease_ms = lease_ms
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)

    def acquire(self, records: list[tuple[str, int]]) -> set[tuple[str, int]]:
        """Take the locks that are free (or already ours); return the records locked."""
        if not records:
            return set()
        pipe = self.client.pipeline(transaction=False)
        for entity, local_id in records:
            pipe.set(lock_key(entity, local_id), self.owner, nx=True, px=self.lease_ms)
        results = pipe.execute()
        taken = {record for record, ok in zip(records, results, strict=True) if ok}
        missing = [r for r in records if r not in taken]
        if missing:  # a lock we hold from an earlier chunk is ours to reuse
            owners = self.client.mget([lock_key(*r) for r in missing])
            taken |= {r for r, owner in zip(missing, owners, strict=True) if owner == self.owner}
        return taken

    def renew(self, records: list[tuple[str, int]]) -> set[tuple[str, int]]:
        """Extend the leases still ours to a full lease; return the records still locked by us.

        Called right before a request that may ``add``: a chunk slowed down by rate limits
        and timeouts must not send an ``add`` for a record whose lease ran out meanwhile
        (another worker may hold it now).
        """
        if not records:
            return set()
        kept = self._renew(keys=[lock_key(*r) for r in records], args=[self.owner, self.lease_ms])
        return {records[i - 1] for i in kept}

    def release(self, records: set[tuple[str, int]]) -> None:
        if records:
            self._release(keys=[lock_key(*r) for r in records], args=[self.owner])
