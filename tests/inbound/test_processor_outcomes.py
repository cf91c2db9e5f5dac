"""What ``InboundBatch`` does and says for each outcome of an event: the log lines are the contract.

Written for the mutants mutation testing found alive in ``_origin_of``, ``_ignore``, ``_apply``,
``_gone``, ``_failed``, ``_should_apply``, ``_coalesce``, ``process``, ``apply_deal`` and ``unlink``
(docs/mutation.md): real sandbox over HTTP, real Redis, the real database.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings

from crmbridge.bitrix.client import BitrixClient
from crmbridge.inbound.events import InboundEvent
from crmbridge.models import SyncRecord
from crmbridge.redis_io import streams
from crmbridge.worker.stream_consumer import StreamMessage
from orders.models import Order
from tests.inbound.helpers import linked_order, silently_set_stage
from tests.inbound.test_processor import inbound_batch

pytestmark = [pytest.mark.urls("tests.inbound.urls"), pytest.mark.django_db(transaction=True)]

WHEN = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)


def message(event: str, bitrix_id: int) -> StreamMessage:
    return StreamMessage(streams.webhooks_stream(), "1-0", InboundEvent(event, bitrix_id, ts=WHEN).to_fields())


def said(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("[WEBHOOK]")]


def process(redis_client, caplog, event: StreamMessage):
    with caplog.at_level(logging.DEBUG, logger="crmbridge.inbound"):
        return inbound_batch(redis_client).process([event])


def test_a_deal_someone_else_made_is_ignored_and_said_so(sandbox, redis_client, caplog):
    deal_id = BitrixClient(settings.BITRIX_WEBHOOK_URL).add("deal", {"TITLE": "made by a manager"})
    event = message("ONCRMDEALUPDATE", deal_id)

    outcome = process(redis_client, caplog, event)

    assert outcome.done == [event]
    assert f"[WEBHOOK] Ignored ONCRMDEALUPDATE for deal {deal_id}: not created by this system " \
           "(no ORIGIN_ID of ours, no linked record)" in said(caplog)  # fmt: skip


def test_an_unknown_deal_that_is_gone_is_ignored_and_said_so(sandbox, redis_client, caplog):
    event = message("ONCRMDEALUPDATE", 987654)

    outcome = process(redis_client, caplog, event)

    assert outcome.done == [event] and not outcome.retry and not outcome.dead
    assert "[WEBHOOK] Ignored ONCRMDEALUPDATE for deal 987654: no local record is linked to it and it no longer " \
           "exists in Bitrix" in said(caplog)  # fmt: skip


def test_a_failed_fetch_is_logged_and_retried(sandbox, alice, redis_client, caplog):
    order = linked_order(alice)
    sandbox.set_faults(error_503_share=1.0)
    event = message("ONCRMDEALUPDATE", order.bitrix_deal_id)

    outcome = process(redis_client, caplog, event)

    ((retried, error),) = outcome.retry
    assert retried == event and error.retryable
    assert f"[WEBHOOK] Could not fetch deal {order.bitrix_deal_id} (order {order.pk}): {error}" in said(caplog)


def test_a_failed_batch_of_fifty_does_not_stop_the_next_batch_from_being_fetched(sandbox, redis_client, caplog):
    """51 deals take two batches; the sandbox's seeded 500 fails the first request only (seed 1 draws 0.13, 0.85)."""
    sandbox.set_faults(error_500_share=0.5, seed=1)
    events = [message("ONCRMDEALUPDATE", deal_id) for deal_id in range(900_001, 900_052)]

    with caplog.at_level(logging.DEBUG, logger="crmbridge.inbound"):
        outcome = inbound_batch(redis_client).process(events)

    assert sandbox.stats()["faults"] == {"error_500": 1}
    assert [retried for retried, _ in outcome.retry] == events[:50]
    assert outcome.done == events[50:]  # fetched by the second batch: gone in Bitrix, so ignored
    assert "[WEBHOOK] Ignored ONCRMDEALUPDATE for deal 900051: no local record is linked to it and it no longer " \
           "exists in Bitrix" in said(caplog)  # fmt: skip


def test_a_stage_change_is_applied_once_and_said_so(sandbox, alice, redis_client, caplog):
    order = linked_order(alice)
    before = Order.objects.get(pk=order.pk).updated_at
    silently_set_stage(order.bitrix_deal_id, "FINAL_INVOICE")
    event = message("ONCRMDEALUPDATE", order.bitrix_deal_id)
    task = f"deal {order.bitrix_deal_id} (order {order.pk})"

    assert process(redis_client, caplog, event).done == [event]
    assert process(redis_client, caplog, event).done == [event]

    lines = said(caplog)
    assert f"[WEBHOOK] Applied {task}: status set to 'shipped' (stage FINAL_INVOICE)" in lines
    assert f"[WEBHOOK] Applied {task}: status already 'shipped' (stage FINAL_INVOICE)" in lines
    changed = Order.objects.get(pk=order.pk)
    assert (changed.status, changed.bitrix_deal_id) == ("shipped", order.bitrix_deal_id)
    assert changed.updated_at > before
    assert SyncRecord.objects.get(entity="deal", local_id=order.pk).remote_changed_at == WHEN


def test_a_delete_event_for_a_deal_that_still_exists_is_applied_as_an_update(sandbox, alice, redis_client, caplog):
    order = linked_order(alice)
    event = message("ONCRMDEALDELETE", order.bitrix_deal_id)

    assert process(redis_client, caplog, event).done == [event]

    task = f"deal {order.bitrix_deal_id} (order {order.pk})"
    assert f"[WEBHOOK] {task}: a delete event, but it still exists; applied as an update" in said(caplog)
    assert Order.objects.get(pk=order.pk).bitrix_deal_id == order.bitrix_deal_id


def test_an_unmapped_stage_names_deal_stage_and_order(sandbox, alice, redis_client, caplog):
    order = linked_order(alice)
    silently_set_stage(order.bitrix_deal_id, "C3:UC_WEIRD")

    process(redis_client, caplog, message("ONCRMDEALUPDATE", order.bitrix_deal_id))

    assert f"[WEBHOOK] Deal {order.bitrix_deal_id} is at stage 'C3:UC_WEIRD', which BITRIX_STAGE_MAP does not map " \
           f"to an order status; order {order.pk} keeps its status" in said(caplog)  # fmt: skip


def test_a_deal_deleted_in_bitrix_unlinks_its_order_only_and_says_when(sandbox, alice, redis_client, caplog):
    order, other = linked_order(alice), linked_order(alice)
    BitrixClient(settings.BITRIX_WEBHOOK_URL).call("crm.deal.delete", {"id": order.bitrix_deal_id})
    event = message("ONCRMDEALDELETE", order.bitrix_deal_id)

    assert process(redis_client, caplog, event).done == [event]

    assert Order.objects.get(pk=order.pk).bitrix_deal_id is None
    assert Order.objects.get(pk=other.pk).bitrix_deal_id == other.bitrix_deal_id
    sync = SyncRecord.objects.get(entity="deal", local_id=order.pk)
    assert sync.state == SyncRecord.State.FAILED
    assert sync.last_error == f"deal {order.bitrix_deal_id} deleted in Bitrix at {WHEN.isoformat()}; unlinked, " \
                              "not re-created"  # fmt: skip
    assert sync.last_error_at is not None and sync.remote_changed_at == WHEN
    task = f"deal {order.bitrix_deal_id} (order {order.pk})"
    assert f"[WEBHOOK] {task} was deleted in Bitrix; order {order.pk} unlinked and NOT re-created " \
           "(its next change or `bitrix_resync` creates a new one)" in said(caplog)  # fmt: skip


def test_a_deal_whose_origin_names_an_unlinked_order_is_ignored_as_not_linked(sandbox, alice, redis_client, caplog):
    """The deal's ORIGIN_ID finds the order (e.g. the worker stopped before saving the deal's ID): ours, not linked."""
    order = linked_order(alice)
    Order.objects.filter(pk=order.pk).update(bitrix_deal_id=None)
    event = message("ONCRMDEALUPDATE", order.bitrix_deal_id)

    assert process(redis_client, caplog, event).done == [event]

    assert f"[WEBHOOK] Ignored ONCRMDEALUPDATE for deal {order.bitrix_deal_id} (order {order.pk}): order {order.pk} " \
           "is not linked (a duplicate or an old record)" in said(caplog)  # fmt: skip
    assert Order.objects.get(pk=order.pk).bitrix_deal_id is None


def test_a_deal_whose_origin_names_a_deleted_order_is_ignored_and_said_so(sandbox, alice, redis_client, caplog):
    order = linked_order(alice)
    Order.objects.filter(pk=order.pk).delete()
    event = message("ONCRMDEALUPDATE", order.bitrix_deal_id)

    assert process(redis_client, caplog, event).done == [event]

    assert f"[WEBHOOK] Ignored ONCRMDEALUPDATE for deal {order.bitrix_deal_id} (order {order.pk}): order {order.pk} " \
           "no longer exists here" in said(caplog)  # fmt: skip


def test_a_duplicate_deal_of_a_linked_order_is_ignored_and_names_the_linked_deal(sandbox, alice, redis_client, caplog):
    order = linked_order(alice)
    ours = {"ORIGINATOR_ID": settings.BITRIX_ORIGINATOR_ID, "ORIGIN_ID": f"order-{order.pk}"}
    duplicate = BitrixClient(settings.BITRIX_WEBHOOK_URL).add("deal", {"TITLE": "a second deal", **ours})
    silently_set_stage(duplicate, "LOSE")
    event = message("ONCRMDEALUPDATE", duplicate)

    assert process(redis_client, caplog, event).done == [event]

    assert f"[WEBHOOK] Ignored ONCRMDEALUPDATE for deal {duplicate} (order {order.pk}): order {order.pk} is linked " \
           f"to deal {order.bitrix_deal_id} (a duplicate or an old record)" in said(caplog)  # fmt: skip
    assert Order.objects.get(pk=order.pk).status == "new"


def test_an_invalid_message_is_a_dead_letter_and_an_error_line(sandbox, redis_client, caplog):
    event = StreamMessage(streams.webhooks_stream(), "5-0", {"v": "9", "event": "ONCRMDEALUPDATE", "bitrix_id": "4"})

    outcome = process(redis_client, caplog, event)

    ((dead, letter),) = outcome.dead
    assert (dead, letter.reason, letter.error_code) == (event, "invalid_message", "")
    assert "[WEBHOOK] Invalid message 5-0: unsupported schema version '9'" in said(caplog)


def test_an_event_older_than_the_last_applied_is_ignored_at_info(sandbox, alice, redis_client, caplog):
    order = linked_order(alice)
    applied = WHEN + timedelta(seconds=2)
    SyncRecord.objects.filter(entity="deal", local_id=order.pk).update(remote_changed_at=applied)
    silently_set_stage(order.bitrix_deal_id, "FINAL_INVOICE")
    event = message("ONCRMDEALUPDATE", order.bitrix_deal_id)

    assert process(redis_client, caplog, event).done == [event]

    line = f"[WEBHOOK] Ignored ONCRMDEALUPDATE for deal {order.bitrix_deal_id} (order {order.pk}): the event is " \
           f"older than the last change applied ({applied.isoformat()})"  # fmt: skip
    assert (logging.INFO, line) in [(r.levelno, r.getMessage()) for r in caplog.records]
    assert Order.objects.get(pk=order.pk).status == "new"


def test_a_chunks_records_are_unlocked_when_it_is_done(sandbox, alice, redis_client):
    order = linked_order(alice)
    event = message("ONCRMDEALUPDATE", order.bitrix_deal_id)

    assert inbound_batch(redis_client, owner="worker-1").process([event]).done == [event]
    assert inbound_batch(redis_client, owner="worker-2").process([event]).done == [event]


def test_an_invalid_message_and_an_ignored_contact_event_do_not_stop_the_chunk(sandbox, alice, redis_client, caplog):
    order = linked_order(alice)
    invalid = StreamMessage(streams.webhooks_stream(), "1-0", {"v": "9"})
    contact = StreamMessage(streams.webhooks_stream(), "2-0", InboundEvent("ONCRMCONTACTUPDATE", 5).to_fields())
    deal = StreamMessage(
        streams.webhooks_stream(), "3-0", InboundEvent("ONCRMDEALUPDATE", order.bitrix_deal_id, ts=WHEN).to_fields()
    )
    without_ts = StreamMessage(streams.webhooks_stream(), "4-0", InboundEvent("ONCRMDEALADD", 987654).to_fields())

    with caplog.at_level(logging.DEBUG, logger="crmbridge.inbound"):
        outcome = inbound_batch(redis_client).process([invalid, contact, deal, without_ts])

    assert [m for m, _ in outcome.dead] == [invalid]
    assert sorted(m.id for m in outcome.done) == ["2-0", "3-0", "4-0"]
    lines = said(caplog)
    assert f"[WEBHOOK] Processing ONCRMDEALUPDATE for deal {order.bitrix_deal_id} (ts: {WHEN.isoformat()}, " \
           "retry: 0, message_id: 3-0)" in lines  # fmt: skip
    assert "[WEBHOOK] Processing ONCRMDEALADD for deal 987654 (ts: none, retry: 0, message_id: 4-0)" in lines
