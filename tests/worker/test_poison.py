"""Issue 13, items 2 and 6: a bad message never poisons its chunk, and is never lost on its way out."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from crmbridge.diagnostics import stream_actions
from crmbridge.diagnostics.doctor import RecentOutcomes
from crmbridge.publishing.messages import Operation
from crmbridge.redis_io import streams, telemetry
from crmbridge.worker import write_back
from crmbridge.worker.dead_letters import delete, parse_dead_letter, requeue
from crmbridge.worker.runner import Worker
from orders.models import Order
from tests.worker.helpers import fast_config

pytestmark = pytest.mark.django_db(transaction=True)


def dead_letters(redis_client) -> list[dict]:
    return [parse_dead_letter(i, f) for i, f in redis_client.xrange(streams.dead_letter_stream())]


def pending_ids(redis_client) -> list[str]:
    entries = redis_client.xpending_range(streams.operations_stream(), streams.GROUP, "-", "+", 100)
    return [e["message_id"] for e in entries]


def make_orders(user, n: int) -> list[Order]:
    return [Order.objects.create(owner=user, service_id="laser-cutting", quantity=i + 1) for i in range(n)]


def test_superscript_id_is_dead_lettered_at_once_and_the_chunk_goes_through(sandbox, alice, redis_client):
    orders = make_orders(alice, 3)
    bad_id = redis_client.xadd(streams.operations_stream(), Operation("deal", "update", 1).to_fields() | {"id": "²"})
    worker = Worker(fast_config(max_retries=5), once=True)

    assert worker.run() == 0

    [letter] = dead_letters(redis_client)
    assert letter["source_id"] == bad_id and letter["reason"] == "invalid_message" and letter["attempts"] == 1
    assert all(o.bitrix_deal_id for o in Order.objects.filter(pk__in=[o.pk for o in orders]))
    assert worker.heartbeat.counters.retried == 0  # the valid ones were not delayed by retries
    assert pending_ids(redis_client) == []


def test_an_invalid_message_is_counted_apart_from_the_portals_failures(sandbox, redis_client):
    """The doctor leaves ``invalid:invalid`` dead letters out of "nothing syncs": no portal call failed."""
    redis_client.xadd(streams.operations_stream(), Operation("deal", "update", 1).to_fields() | {"id": "²"})

    assert Worker(fast_config(), once=True).run() == 0

    assert sum(row["dead_lettered"] for row in telemetry.read_minutes(redis_client, 5)) == 1
    recent = RecentOutcomes.read(redis_client)
    assert (recent.dead_lettered, recent.failed) == (0, 0)


def test_an_event_without_an_entity_is_counted_as_unknown(sandbox, redis_client):
    redis_client.xadd(streams.webhooks_stream(), {"v": "1", "event": "ONCRMDEALUPDATE", "bitrix_id": "abc"})

    assert Worker(fast_config(), once=True).run() == 0

    counts = [row["by_kind"] for row in telemetry.read_minutes(redis_client, 5)]  # /metrics' labels
    assert sum(c.get("dead_lettered:unknown:event", 0) for c in counts) == 1


@pytest.mark.parametrize("raw", ["٣", "³", "1²", " 12", "0", "-4", "1" * 19])
def test_only_ascii_digits_make_a_local_id(raw):
    from crmbridge.publishing.messages import InvalidMessage

    with pytest.raises(InvalidMessage):
        Operation.from_fields(Operation("deal", "update", 1).to_fields() | {"id": raw})


class RecordingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_an_unexpected_error_is_isolated_to_the_message_that_causes_it(sandbox, alice, redis_client, monkeypatch):
    """A bug hit by one record: the others sync on the first try, only the culprit retries."""
    orders = make_orders(alice, 4)
    culprit = orders[2].pk
    real_load = write_back.load_records

    def load_records(entity, local_ids):  # a fault in a collaborator, for one record only
        if entity == "deal" and culprit in local_ids:
            raise RuntimeError(f"cannot load order {culprit}")
        return real_load(entity, local_ids)

    monkeypatch.setattr(write_back, "load_records", load_records)
    worker = Worker(fast_config(max_retries=2), once=True)
    seen = RecordingHandler()
    logging.getLogger("crmbridge.worker").addHandler(seen)

    try:
        worker.run()
    finally:
        logging.getLogger("crmbridge.worker").removeHandler(seen)

    synced = {o.pk for o in Order.objects.filter(pk__in=[o.pk for o in orders], bitrix_deal_id__isnull=False)}
    assert synced == {o.pk for o in orders} - {culprit}
    [letter] = dead_letters(redis_client)
    assert letter["payload"]["id"] == str(culprit) and letter["reason"] == "max_retries_exceeded"
    assert worker.heartbeat.counters.retried == 2  # the culprit's retries only
    assert pending_ids(redis_client) == []
    # The operator's guide's line for each attempt of the culprit alone, with its traceback.
    line = f"[WORKER] Error processing operation message: {letter['source_id']} failed"
    firsts = [r.getMessage().split("\n", 1) for r in seen.records]  # the redacting filter appends the traceback
    lone = [rest[:1] == ["Traceback"] or rest[0].startswith("Traceback") for first, *rest in firsts if first == line]
    assert lone == [True] * 3  # the first try and two retries, each with its traceback


def test_a_failing_dead_letter_write_leaves_the_message_pending(sandbox, alice, redis_client, caplog):
    """WRONGTYPE on the dead-letter key: MULTI would still XACK; the message must stay pending."""
    redis_client.set(streams.dead_letter_stream(), "in the way")
    bad_id = redis_client.xadd(streams.operations_stream(), {"garbage": "yes"})
    worker = Worker(fast_config())
    thread = threading.Thread(target=worker.run, daemon=True)
    with caplog.at_level(logging.ERROR, logger="crmbridge.worker"):
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while "dead" not in caplog.text.lower() or "WRONGTYPE" not in caplog.text:
                assert time.monotonic() < deadline, "no error logged"
                time.sleep(0.05)
            time.sleep(0.3)
            assert pending_ids(redis_client) == [bad_id]  # not acknowledged, not lost
            redis_client.delete(streams.dead_letter_stream())  # the operator clears the way
            deadline = time.monotonic() + 10
            while pending_ids(redis_client):
                assert time.monotonic() < deadline, "never dead-lettered after the key was fixed"
                time.sleep(0.05)
        finally:
            worker.shutdown = True
            thread.join(10)
    [letter] = dead_letters(redis_client)
    assert letter["source_id"] == bad_id and letter["reason"] == "invalid_message"


def test_requeue_keeps_the_letter_when_the_source_stream_refuses(redis_client):
    redis_client.xadd(streams.dead_letter_stream(), {"source_stream": "bad:key", "payload": '{"entity": "deal"}'})
    redis_client.set("bad:key", "a string")
    [(dead_id, _)] = redis_client.xrange(streams.dead_letter_stream())

    with pytest.raises(Exception, match="WRONGTYPE"):
        requeue(redis_client, [dead_id])

    assert [i for i, _ in redis_client.xrange(streams.dead_letter_stream())] == [dead_id]


def test_dashboard_move_to_dead_keeps_the_entry_pending_on_wrongtype(redis_client):
    stream = streams.operations_stream()
    redis_client.xgroup_create(stream, streams.GROUP, id="0", mkstream=True)
    entry_id = redis_client.xadd(stream, Operation("deal", "update", 7).to_fields())
    redis_client.xreadgroup(streams.GROUP, "worker_x-1", {stream: ">"})
    redis_client.set(streams.dead_letter_stream(), "in the way")

    with pytest.raises(Exception, match="WRONGTYPE"):
        stream_actions.move_pending_to_dead(redis_client, stream, [entry_id])

    assert pending_ids(redis_client) == [entry_id]


def test_requeue_puts_each_named_letter_back_once_and_skips_what_it_cannot(redis_client):
    """Found by mutation testing: requeue's own cases were only reached through the dashboard."""
    dead, ops = streams.dead_letter_stream(), streams.operations_stream()
    first = redis_client.xadd(dead, {"source_stream": ops, "payload": '{"entity": "deal", "id": 1}'})
    empty = redis_client.xadd(dead, {"source_stream": ops, "payload": "{}"})
    listed = redis_client.xadd(dead, {"source_stream": ops, "payload": '["not", "a", "map"]'})
    last = redis_client.xadd(dead, {"payload": '{"entity": "contact", "id": 2}'})  # no source: the operations stream

    assert requeue(redis_client, ["0-1", first, empty, listed, last]) == 2  # "0-1": no such letter

    assert [fields for _id, fields in redis_client.xrange(ops)] == [
        {"entity": "deal", "id": "1", "requeued_from": first},
        {"entity": "contact", "id": "2", "requeued_from": last},
    ]
    assert [entry_id for entry_id, _ in redis_client.xrange(dead)] == [empty, listed]


def test_delete_removes_the_named_letters_and_nothing_named_is_no_error(redis_client):
    """Found by mutation testing: XDEL with no IDs is a Redis error, so deleting nothing must not send it."""
    dead, ops = streams.dead_letter_stream(), streams.operations_stream()
    kept, gone = (redis_client.xadd(dead, {"source_stream": ops, "payload": "{}"}) for _ in range(2))

    assert delete(redis_client, []) == 0
    assert delete(redis_client, iter([gone, "0-1"])) == 1  # any iterable; an unknown ID is not counted
    assert [entry_id for entry_id, _ in redis_client.xrange(dead)] == [kept]
