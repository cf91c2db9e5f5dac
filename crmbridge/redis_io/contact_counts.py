"""How contacts came to be: adopted by e-mail, by phone, ambiguous, created (issue 20).

One Redis hash, ``{prefix}contacts:matching``, shared by every worker and by
``bitrix_resync`` (HINCRBY, so nothing is lost between processes and nothing
resets when a worker restarts). Read by the sync status endpoint, ``/metrics``
and the dashboard. ``ambiguous`` counts adoptions that had several candidates
(the oldest was taken); they are also counted under their ``adopted_*``.
"""

from __future__ import annotations

import redis

from crmbridge.redis_io import streams

OUTCOMES = ("adopted_email", "adopted_phone", "ambiguous", "created")


def counts_key() -> str:
    return streams.key("contacts:matching")


def add(client: redis.Redis, changes: dict[str, int]) -> None:
    """Add to the counters (``{"created": 3, "adopted_email": 1}``); unknown names are a bug."""
    changes = {name: n for name, n in changes.items() if n}
    unknown = set(changes) - set(OUTCOMES)
    if unknown:
        raise ValueError(f"unknown contact outcomes: {sorted(unknown)}")
    if not changes:
        return
    pipe = client.pipeline(transaction=False)
    for name, n in changes.items():
        pipe.hincrby(counts_key(), name, n)
    pipe.execute()


def read(client: redis.Redis) -> dict[str, int]:
    """Every outcome with its count (0 when never counted)."""
    raw = client.hgetall(counts_key())
    counts = {}
    for name in OUTCOMES:
        try:
            counts[name] = int(raw.get(name, 0))
        except (TypeError, ValueError):
            counts[name] = 0
    return counts
