"""Failing well: retries, dead letters with reasons, pause and resume."""

from __future__ import annotations

import threading

import pytest

from accounts.models import User
from crmbridge.publishing.messages import Operation
from crmbridge.publishing.publisher import queue_contact_update
from crmbridge.redis_io import streams, telemetry
from crmbridge.worker.dead_letters import parse_dead_letter
from crmbridge.worker.runner import Worker
from devtools.sandbox.deal_depth import _outcome
from devtools.sandbox.errors import RestError
from orders.models import Order
from tests.conftest import wait_for
from tests.worker.helpers import fast_config, run_worker_once

pytestmark = pytest.mark.django_db(transaction=True)


def dead_letters(redis_client) -> list[dict]:
    return [parse_dead_letter(i, f) for i, f in redis_client.xrange(streams.dead_letter_stream())]


def pending(redis_client) -> int:
    return redis_client.xpending(streams.operations_stream(), streams.GROUP)["pending"]


def make_orders(user, n: int) -> list[Order]:
    return [Order.objects.create(owner=user, service_id="laser-cutting", quantity=i + 1) for i in range(n)]


@pytest.mark.parametrize(
    "faults",
    [
        {"error_500_share": 0.5},
        {"error_503_share": 0.2},
        {"html_share": 0.5},
        {"timeout_share": 0.3, "timeout_seconds": 0.5},
    ],
    ids=["500", "503", "non-json", "timeout"],
)
def test_transient_faults_are_retried_until_they_succeed(sandbox, alice, redis_client, settings, faults):
    settings.BITRIX_HTTP_READ_TIMEOUT = 0.3
    orders = make_orders(alice, 8)
    sandbox.set_faults(seed=7, **faults)

    assert run_worker_once(max_retries=30) == 0

    sandbox.portal.faults.reset()
    assert all(o.bitrix_deal_id for o in Order.objects.filter(pk__in=[o.pk for o in orders]))
    assert len(sandbox.records("deal")) == len(orders)
    assert not sandbox.stats()["duplicates"]["deal"]
    assert dead_letters(redis_client) == [] and pending(redis_client) == 0


def test_poison_and_permanent_errors_go_to_dead_letters_others_go_through(sandbox, alice, bob, redis_client, caplog):
    orders = make_orders(alice, 3)
    redis_client.xadd(streams.operations_stream(), {"garbage": "yes"})
    redis_client.xadd(streams.operations_stream(), Operation("deal", "explode", 1).to_fields() | {"op": "explode"})
    # An e-mail the portal refuses (ERROR_CORE): permanent for this record.
    User.objects.filter(pk=bob.pk).update(email="not-an-email")
    queue_contact_update(bob.pk)
    gone = Order.objects.create(owner=alice, service_id="welding", quantity=1)
    Order.objects.filter(pk=gone.pk).delete()

    run_worker_once()

    reasons = sorted(letter["reason"] for letter in dead_letters(redis_client))
    assert reasons.count("invalid_message") == 2
    for letter in [x for x in dead_letters(redis_client) if x["reason"] == "invalid_message"]:
        line = f"[WORKER] Error processing operation message: {letter['source_id']}: {letter['error_description']}"
        assert line in caplog.messages  # the operator's guide's line, with the message's ID and why
    assert "record_not_found" in reasons
    assert "permanent_error" in reasons
    bob_letter = next(x for x in dead_letters(redis_client) if x["reason"] == "permanent_error")
    assert bob_letter["error_code"] == "ERROR_CORE" and bob_letter["payload"]["id"] == str(bob.pk)
    assert all(o.bitrix_deal_id for o in Order.objects.filter(pk__in=[o.pk for o in orders]))
    assert pending(redis_client) == 0


def test_a_deleted_records_message_is_a_dead_letter_with_the_specs_error_line(sandbox, alice, redis_client, caplog):
    """The operator's guide's line for a message that cannot be processed, naming the record."""
    gone = Order.objects.create(owner=alice, service_id="welding", quantity=1)
    Order.objects.filter(pk=gone.pk).delete()

    run_worker_once()

    letter = next(x for x in dead_letters(redis_client) if x["reason"] == "record_not_found")
    reason = f"order {gone.pk} no longer exists in the database"
    expected = f"[WORKER] Error processing operation message: {letter['source_id']}: {reason}"
    assert expected in [r.getMessage() for r in caplog.records]
    assert (letter["error_code"], letter["error_description"]) == ("", reason)  # no Bitrix error: no code


def test_a_dead_letter_has_every_documented_field_and_the_chunk_leaves_no_lock(sandbox, alice, redis_client):
    """The dead-letter entry's fields as README documents them (``redis-cli XRANGE bitrix:dead - +``
    and the requeue read them by name), and no record lock outlives the chunk that took it."""
    gone = Order.objects.create(owner=alice, service_id="welding", quantity=1)
    Order.objects.filter(pk=gone.pk).delete()

    run_worker_once()

    [(_id, fields)] = [e for e in redis_client.xrange(streams.dead_letter_stream())]
    assert set(fields) == {
        "source_stream", "source_id", "payload", "reason", "error_code", "error_description",
        "attempts", "first_seen", "failed_at", "consumer",
    }  # fmt: skip
    assert fields["source_stream"] == streams.operations_stream()
    assert redis_client.keys(streams.key("lock:*")) == []  # record locks (alice's contact was synced too)


def test_retries_exhausted_go_to_dead_letters_not_dropped(sandbox, alice, redis_client):
    [order] = make_orders(alice, 1)
    sandbox.set_faults(error_500_share=1.0)

    run_worker_once(max_retries=2)

    [letter] = [x for x in dead_letters(redis_client) if x["payload"].get("entity") == "deal"]
    assert letter["reason"] == "max_retries_exceeded"
    assert letter["attempts"] == 3
    assert letter["payload"]["id"] == str(order.pk)
    assert pending(redis_client) == 0


def test_expired_webhook_pauses_then_resumes_without_losing_anything(sandbox, alice, redis_client):
    sandbox.set_faults(auth_error="expired_token")
    orders = make_orders(alice, 5)
    worker = Worker(fast_config(pause_probe_seconds=0.3))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: worker.paused_reason != "")
        [beat] = telemetry.read_workers(redis_client)
        assert beat["state"] == "paused" and "expired" in beat["pause_reason"].lower()
        assert dead_letters(redis_client) == []  # no retries burned on a configuration error
        sandbox.portal.faults.reset()
        wait_for(lambda: all(o.bitrix_deal_id for o in Order.objects.filter(pk__in=[o.pk for o in orders])))
        wait_for(lambda: worker.paused_reason == "")
    finally:
        worker.shutdown = True
        thread.join(10)
    assert len(sandbox.records("deal")) == 5 and pending(redis_client) == 0


def test_a_deal_whose_new_contact_fails_is_kept_once_and_reported(sandbox, django_user_model, redis_client, caplog):
    """The contact add fails in the same batch as the deal that references it."""
    carol = django_user_model.objects.create_user(username="carol", email="carol@example.com", password="x-Pass-1")
    User.objects.filter(pk=carol.pk).update(email="not-an-email")  # the portal will refuse this contact
    order = Order.objects.create(owner=carol, service_id="welding", quantity=2)

    run_worker_once(max_retries=2)

    order.refresh_from_db()
    deals = [d for d in sandbox.records("deal") if d["ORIGIN_ID"] == f"order-{order.pk}"]
    assert len(deals) == 1 and order.bitrix_deal_id == int(deals[0]["ID"])  # created once, never again
    letters = {x["payload"]["entity"]: x for x in dead_letters(redis_client)}
    assert letters["contact"]["reason"] == "permanent_error"
    refused = letters["contact"]["error_description"]
    assert refused.startswith("ERROR_CORE")  # the portal's refusal, as the ERROR line says it
    assert f"Failed to create Bitrix contact for user {carol.pk}: {refused}" in caplog.messages
    assert letters["deal"]["reason"] == "max_retries_exceeded"
    assert letters["deal"]["error_code"] == "CONTACT_FAILED"
    assert pending(redis_client) == 0


def test_a_deal_refused_with_its_refused_new_contact_is_retried_as_the_contacts_failure(
    sandbox, django_user_model, redis_client
):
    """Both adds fail in one request: the deal's error is its contact's (retried), not its own."""
    carol = django_user_model.objects.create_user(username="carol", email="carol@example.com", password="x-Pass-1")
    User.objects.filter(pk=carol.pk).update(email="not-an-email")  # the portal will refuse this contact
    Order.objects.create(owner=carol, service_id="welding", quantity=2)
    sandbox.set_faults(operation_limits={"crm.deal.add": 60})

    run_worker_once(max_retries=0)

    letters = {x["payload"]["entity"]: x for x in dead_letters(redis_client)}
    assert letters["contact"]["reason"] == "permanent_error"
    assert (letters["deal"]["reason"], letters["deal"]["error_code"]) == ("max_retries_exceeded", "CONTACT_FAILED")
    assert letters["deal"]["error_description"].startswith("CONTACT_FAILED: its contact failed: OPERATION_TIME_LIMIT")
    assert sandbox.records("deal") == []


def test_an_add_answered_without_an_id_is_retried_as_a_bad_result(sandbox, alice, redis_client, monkeypatch):
    """The portal answered the ``add`` with something that is not an ID: retried, and the letter says what came."""
    monkeypatch.setitem(sandbox.portal.methods, "crm.contact.add", lambda params, caller: _outcome("ok"))
    queue_contact_update(alice.pk)

    run_worker_once(max_retries=0)

    [letter] = dead_letters(redis_client)
    assert (letter["reason"], letter["error_code"]) == ("max_retries_exceeded", "BAD_RESULT")
    assert letter["error_description"] == "BAD_RESULT: no usable result: 'ok'"


def test_an_order_the_mapping_cannot_express_is_a_mapping_error_for_that_order(sandbox, alice, redis_client, caplog):
    order = Order.objects.create(owner=alice, service_id="welding", quantity=1)
    Order.objects.filter(pk=order.pk).update(status="archived")  # written around the model: no stage for it

    run_worker_once(max_retries=0)

    [letter] = [x for x in dead_letters(redis_client) if x["payload"]["entity"] == "deal"]
    assert (letter["reason"], letter["error_code"]) == ("max_retries_exceeded", "MAPPING_ERROR")
    reason = "ImproperlyConfigured: BITRIX_STAGE_MAP has no stage for order status 'archived'"
    assert letter["error_description"] == f"MAPPING_ERROR: {reason}"
    lines = [m.split("\n", 1)[0] for m in caplog.messages]  # the traceback follows the line
    assert f"[WORKER] Error processing operation message: cannot map order {order.pk}" in lines
    assert User.objects.get(pk=alice.pk).bitrix_contact_id  # the rest of the chunk went through


def test_a_lone_write_refused_as_a_whole_request_is_a_dead_letter_after_one_request(
    sandbox, alice, redis_client, monkeypatch
):
    """A permanent failure of a request of several writes is isolated by sending each alone; one alone is final."""
    batch = sandbox.portal._batch

    def refuse_writes(params, caller):  # lookups go through; a request with a write is refused
        if "crm.contact.add" in str(params):
            raise RestError(400, "ERROR_ARGUMENT", "refused")
        return batch(params, caller)

    monkeypatch.setattr(sandbox.portal, "_batch", refuse_writes)
    queue_contact_update(alice.pk)

    run_worker_once()

    [letter] = dead_letters(redis_client)
    assert (letter["reason"], letter["error_code"]) == ("permanent_error", "ERROR_ARGUMENT")
    assert sandbox.stats()["errors"] == {"ERROR_ARGUMENT": 1}  # the write was sent once


def test_a_restart_reads_its_own_pending_once_not_in_a_burst(sandbox, alice, redis_client):
    """A restarted worker (same name) with a portal in trouble must not spend every retry at once."""
    [order] = make_orders(alice, 1)
    redis_client.xgroup_create(streams.operations_stream(), streams.GROUP, id="0", mkstream=True)
    redis_client.xreadgroup(streams.GROUP, "worker_same-1", {streams.operations_stream(): ">"})  # held before a crash
    sandbox.set_faults(error_500_share=1.0)
    worker = Worker(fast_config(max_retries=5), name="worker_same-1")
    worker.consumer.ensure_groups()

    worker.recover_own_pending()

    pending = redis_client.xpending_range(streams.operations_stream(), streams.GROUP, "-", "+", 10)
    [entry] = [e for e in pending if entry_is_deal(redis_client, e["message_id"], order.pk)]
    assert entry["times_delivered"] == 2  # the crash's delivery and one history read, no burst
    assert dead_letters(redis_client) == []
    assert len(worker.schedule) > 0  # held for a retry with backoff


def entry_is_deal(redis_client, message_id: str, order_id: int) -> bool:
    [(_, fields)] = redis_client.xrange(streams.operations_stream(), message_id, message_id)
    return fields.get("entity") == "deal" and fields.get("id") == str(order_id)
