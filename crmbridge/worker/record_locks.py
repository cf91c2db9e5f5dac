"""One worker per record at a time, on every host: short leases in Redis.

Two workers can hold messages for the same record at the same moment (a
duplicate message, a takeover). Without a lock both could send ``add`` and
Bitrix, which has no idempotency key, would keep two deals. A worker that
cannot take a record's lock leaves its messages pending and tries again soon.

A lock whose owner is dead (its heartbeat expired, see
``crmbridge.redis_io.telemetry.dead_workers``) is taken over at once, like its entries,
rather than after the lease: the lease is only the last resort for an owner
that never beat. Should the "dead" owner wake up, its renewal before sending
(``renew``) fails and it sends nothing for that record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

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

_STEAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""

_RELEASE = """
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 1
"""


logger = logging.getLogger("crmbridge.worker")


def lock_key(entity: str, local_id: int) -> str:
    return streams.key(f"lock:{entity}:{local_id}")


class RecordLocks:
    def __init__(
        self,
        client: redis.Redis,
        *,
        owner: str,
        lease_ms: int,
        dead_owners: Callable[[], set[str]] | None = None,
    ) -> None:
        self.client = client
        self.owner = owner
        self.lease_ms = lease_ms
        self.dead_owners = dead_owners
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)
        self._steal = client.register_script(_STEAL)

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
        if missing:  # a lock we hold from an earlier chunk is ours to reuse; a dead owner's is ours to take
            owners = dict(zip(missing, self.client.mget([lock_key(*r) for r in missing]), strict=True))
            taken |= {r for r, owner in owners.items() if owner == self.owner}
            others = {r: owner for r, owner in owners.items() if owner and owner != self.owner}
            if others and self.dead_owners is not None:
                taken |= self._take_from_dead(others, self.dead_owners())
        return taken

    def _take_from_dead(self, held: dict[tuple[str, int], str], dead: set[str]) -> set[tuple[str, int]]:
        taken = set()
        for record, owner in held.items():
            if owner in dead and self._steal(keys=[lock_key(*record)], args=[owner, self.owner, self.lease_ms]):
                logger.warning("[WORKER] Took over the lock on %s %s from stopped consumer %s", *record, owner)
                taken.add(record)
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
