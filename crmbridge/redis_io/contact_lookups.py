"""Users ``bitrix_resync`` just looked up without finding a customer: the worker need not look again.

A backfill looks up 500 users per request; without this note the worker would
look each of them up once more (one request per chunk) right after. The note
is a hash ``{prefix}contacts:no_match`` (user ID -> Unix time) and counts for
``FRESH_SECONDS``: a user created later than that is looked up again, so a
customer the sales team entered meanwhile is still found.
"""

from __future__ import annotations

import time

import redis

from crmbridge.redis_io import streams

FRESH_SECONDS = 3600


def no_match_key() -> str:
    return streams.key("contacts:no_match")


def remember_no_match(client: redis.Redis, user_ids: list[int]) -> None:
    if not user_ids:
        return
    now = f"{time.time():.0f}"
    pipe = client.pipeline(transaction=False)
    pipe.hset(no_match_key(), mapping=dict.fromkeys(map(str, user_ids), now))
    pipe.expire(no_match_key(), FRESH_SECONDS)
    pipe.execute()


def take_recent_no_match(client: redis.Redis, user_ids: list[int]) -> set[int]:
    """Those of ``user_ids`` looked up without a match within ``FRESH_SECONDS``; their notes are removed."""
    if not user_ids:
        return set()
    stamps = client.hmget(no_match_key(), [str(u) for u in user_ids])
    oldest = time.time() - FRESH_SECONDS
    recent = {u for u, stamp in zip(user_ids, stamps, strict=True) if stamp and float(stamp) >= oldest}
    noted = [str(u) for u, stamp in zip(user_ids, stamps, strict=True) if stamp]
    if noted:
        client.hdel(no_match_key(), *noted)
    return recent
