"""``queue_pull``: one pull event per linked order, queued in chunks, progress reported per chunk."""

from __future__ import annotations

import pytest

from crmbridge.inbound.pull import queue_pull
from orders.models import Order


@pytest.mark.django_db
def test_every_linked_deal_is_queued_once_in_chunks(alice, webhook_entries):
    """Found by mutation testing: the chunk size, the running count and the progress were not checked."""
    for deal_id in (11, 12, None, 13, 14, 15):
        order = Order.objects.create(owner=alice, service_id="cnc-milling", quantity=1)
        Order.objects.filter(pk=order.pk).update(bitrix_deal_id=deal_id)  # linked without the worker
    progress: list[int] = []

    assert queue_pull(chunk_size=2, on_progress=progress.append) == 5

    assert progress == [2, 2, 1]
    entries = webhook_entries()
    assert [(e["event"], e["bitrix_id"], e["src"]) for e in entries] == [
        ("ONCRMDEALUPDATE", str(deal_id), "pull") for deal_id in (11, 12, 13, 14, 15)
    ]


@pytest.mark.django_db
def test_the_default_chunk_is_five_hundred_deals(alice, webhook_entries):
    """A chunk is one pipeline round trip and one progress step: 500 unless told otherwise."""
    Order.objects.bulk_create(
        Order(owner=alice, service_id="cnc-milling", quantity=1, bitrix_deal_id=deal_id) for deal_id in range(1, 502)
    )
    progress: list[int] = []

    assert queue_pull(on_progress=progress.append) == 501

    assert progress == [500, 1]
    assert len(webhook_entries()) == 501
