"""Re-apply the current stage of every linked deal: the recovery for lost inbound events.

The portal does not resend an event our endpoint could not queue (Redis was
down), so an order's status may be stale afterwards. ``queue_pull`` adds one
``ONCRMDEALUPDATE`` message (``src=pull``) per linked order to
``{prefix}webhooks``; the worker then fetches each deal and applies its stage
exactly as for a portal event (locks, no ping-pong, batches of 50). Pulled
events bypass the "older than the last applied event" check: they carry our
clock, not the portal's, and their point is to apply what Bitrix shows now.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from crmbridge.inbound.events import InboundEvent
from crmbridge.redis_io import streams
from crmbridge.redis_io.connection import get_redis
from orders.models import Order

PULL_EVENT = "ONCRMDEALUPDATE"


def linked_deal_ids(chunk_size: int) -> Iterator[list[int]]:
    """The Bitrix IDs of linked orders, in primary-key chunks."""
    queryset = Order.objects.filter(bitrix_deal_id__isnull=False).order_by("pk")
    last_pk = 0
    while True:
        rows = list(queryset.filter(pk__gt=last_pk).values_list("pk", "bitrix_deal_id")[:chunk_size])
        if not rows:
            return
        last_pk = rows[-1][0]
        yield [deal_id for _, deal_id in rows]


def queue_pull(*, chunk_size: int = 500, on_progress: Callable[[int], None] | None = None) -> int:
    """Queue a pull event per linked deal; returns how many. Raises ``redis.RedisError``."""
    client = get_redis()
    queued = 0
    for deal_ids in linked_deal_ids(chunk_size):
        pipe = client.pipeline(transaction=False)
        for deal_id in deal_ids:
            pipe.xadd(streams.webhooks_stream(), InboundEvent(PULL_EVENT, deal_id, src="pull").to_fields())
        pipe.execute()
        queued += len(deal_ids)
        if on_progress is not None:
            on_progress(len(deal_ids))
    return queued
