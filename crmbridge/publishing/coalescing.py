"""Publish-time coalescing: one unacknowledged message per record is enough.

A message names a record, not its contents; the worker syncs the record's
current state. While a record already has a message in ``{prefix}operations``
that no worker has acknowledged yet, a new change adds no entry: the outbox's
publish script (``crmbridge.publishing.outbox.PUBLISH_SCRIPT``) finds the record's last
message (``{prefix}last:<entity>:<id>``) still unacknowledged - not yet
delivered, or in the pending list - and sets the record's *dirty* flag
(``{prefix}dirty:<entity>:<id>``) instead of XADDing.

Why nothing is lost: the skipped change committed before its publish ran. The
worker clears the dirty flags of a chunk's records *before* it loads them from
the database (``clear_dirty``), and acknowledges a record's messages only if
its flag is still clear, in one script (``ack_unless_dirty``). So a change
skipped before the clear is in what the worker loads; a change skipped after
it sets the flag again, the acknowledgement is refused, and the worker syncs
the record once more. Every skip happens while the message is unacknowledged
(checked in the same script as the skip), so no skip can fall after the
acknowledgement.

Combined with the worker's per-record interval (``crmbridge.worker.record_pacing``:
a record synced less than its interval ago waits, its message pending, and the
interval doubles while the record stays hot), a burst of edits on one order
costs a few portal updates, and one stream entry per update instead of one per edit.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from crmbridge.redis_io import streams

Key = tuple[str, int]

# KEYS[1] stream, KEYS[2] dirty flag; ARGV[1] group, ARGV[2..] entry IDs.
# Returns 1 (acknowledged) or 0 (a change was skipped meanwhile: sync again first).
ACK_UNLESS_DIRTY = """
if redis.call('EXISTS', KEYS[2]) == 1 then
    return 0
end
redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
return 1
"""

# Used by the publish script: is entry ARGV id of stream KEYS still unacknowledged in group?
UNACKNOWLEDGED_LUA = """
local function id_after(a, b)
    local a_ms, a_seq = string.match(a, '^(%d+)-(%d+)$')
    local b_ms, b_seq = string.match(b, '^(%d+)-(%d+)$')
    a_ms, a_seq, b_ms, b_seq = tonumber(a_ms), tonumber(a_seq), tonumber(b_ms), tonumber(b_seq)
    return a_ms > b_ms or (a_ms == b_ms and a_seq > b_seq)
end

local function unacknowledged(stream, group, id)
    if #redis.call('XRANGE', stream, id, id) == 0 then
        return false
    end
    local ok, pending = pcall(redis.call, 'XPENDING', stream, group, id, id, 1)
    if not ok then
        return true -- no group yet: nothing was delivered
    end
    if #pending > 0 then
        return true
    end
    for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
        local fields = {}
        for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
        if fields['name'] == group then
            return id_after(id, fields['last-delivered-id'])
        end
    end
    return true
end
"""


def last_key(entity: str, local_id: str | int) -> str:
    return streams.key(f"last:{entity}:{local_id}")


def dirty_key(entity: str, local_id: str | int) -> str:
    return streams.key(f"dirty:{entity}:{local_id}")


def clear_dirty(client: redis.Redis, records: Iterable[Key]) -> None:
    """Before loading these records: changes skipped from now on set the flag again."""
    keys = [dirty_key(entity, local_id) for entity, local_id in set(records)]
    if keys:
        client.delete(*keys)


def ack_unless_dirty(client: redis.Redis, stream: str, group: str, batches: dict[Key, list[str]]) -> set[Key]:
    """Acknowledge each record's entries unless its dirty flag is set; returns the records refused."""
    if not batches:
        return set()
    script = client.register_script(ACK_UNLESS_DIRTY)
    pipe = client.pipeline(transaction=False)
    records = list(batches)
    for record in records:
        script(keys=[stream, dirty_key(*record)], args=[group, *batches[record]], client=pipe)
    return {record for record, acked in zip(records, pipe.execute(), strict=True) if not acked}
