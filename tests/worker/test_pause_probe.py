"""Issue 13, item 1: a paused worker probes the portal itself and resumes, whatever it holds."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from crmbridge.inbound.events import InboundEvent
from crmbridge.redis_io import streams, telemetry
from crmbridge.worker.heartbeat import Heartbeat
from crmbridge.worker.runner import Worker
from crmbridge.worker.stream_consumer import StreamMessage
from orders.models import Order
from tests.conftest import wait_for
from tests.worker.helpers import fast_config, run_worker_once

pytestmark = pytest.mark.django_db(transaction=True)

PROBE = 1.0


def deal_title(sandbox, deal_id: int) -> str:
    return next(d["TITLE"] for d in sandbox.records("deal") if int(d["ID"]) == deal_id)


def test_resumes_after_the_webhook_is_fixed_while_an_event_waits_behind_an_edit(sandbox, alice, redis_client):
    order = Order.objects.create(owner=alice, service_id="cnc-milling", quantity=2)
    assert run_worker_once() == 0
    order.refresh_from_db()
    sandbox.set_faults(auth_error="expired_token")
    redis_client.xadd(streams.webhooks_stream(), InboundEvent("ONCRMDEALUPDATE", order.bitrix_deal_id).to_fields())
    worker = Worker(fast_config(pause_probe_seconds=PROBE))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: worker.paused_reason != "", 10, "paused")
        order.quantity = 7  # an edit while paused: its message waits unread; the event now waits for it
        order.save()
        time.sleep(PROBE * 2.5)  # the held event was tried again: "local change pending"
        assert worker.paused_reason and len(worker.schedule) == 1

        sandbox.portal.faults.reset()  # the operator fixes the webhook

        wait_for(lambda: worker.paused_reason == "", PROBE + 2, "resumed")
        wait_for(lambda: " x 7" in deal_title(sandbox, order.bitrix_deal_id), PROBE + 2, "the edit in Bitrix")
    finally:
        worker.shutdown = True
        thread.join(10)


def test_probes_while_paused_and_stays_paused_while_the_portal_refuses(sandbox, alice, redis_client):
    sandbox.set_faults(auth_error="expired_token")
    Order.objects.create(owner=alice, service_id="cnc-milling", quantity=2)
    worker = Worker(fast_config(pause_probe_seconds=0.3))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: worker.paused_reason != "", 10, "paused")
        before = sandbox.stats()["requests"]
        time.sleep(1.5)
        assert worker.paused_reason  # still paused
        assert 2 <= sandbox.stats()["requests"] - before <= 8  # probes every 0.3 s, not a flood
    finally:
        worker.shutdown = True
        thread.join(10)


def test_a_probe_while_the_webhook_is_refused_is_one_request(sandbox, redis_client):
    """Found by mutation testing: the probe asks ``profile`` only; the mapping check (several requests)
    waits until the portal answers, so a refused webhook costs one request per probe."""
    sandbox.set_faults(auth_error="expired_token")
    worker = Worker(fast_config(), name="prober")
    before = dict(sandbox.stats()["by_method"])

    worker._probe()

    after = sandbox.stats()["by_method"]
    assert {m: n - before.get(m, 0) for m, n in after.items() if n != before.get(m, 0)} == {"profile": 1}
    assert "expired_token" in worker.paused_reason  # still paused


def test_a_probe_that_gets_an_answer_resumes_at_once_and_says_so(sandbox, redis_client, caplog):
    """Found by mutation testing: the INFO line names the pause it ends; the heartbeat says
    "running" at once (a forced beat, whatever the interval) with what is held; held messages are due."""
    sandbox.set_faults(auth_error="expired_token")
    worker = Worker(fast_config(heartbeat_seconds=60), name="prober")
    worker._probe()
    reason = worker.paused_reason
    worker.schedule.hold(StreamMessage(streams.operations_stream(), "1-0", {}), delay=3600, counted=True)
    sandbox.portal.faults.reset()

    with caplog.at_level(logging.INFO, logger="crmbridge.worker"):
        worker._probe()

    assert f"[WORKER] Bitrix answers again; resuming sync (was paused: {reason})" in caplog.messages
    beat = redis_client.hgetall(telemetry.worker_key("prober"))
    assert (beat["state"], beat["pause_reason"], beat["current"]) == ("running", "", "1 message(s) held for retry")
    assert [held.message.id for held in worker.schedule.pop_due(10)] == ["1-0"]


def test_the_heartbeat_threads_beat_says_nothing_is_held(redis_client):
    """Found by mutation testing: the beat thread passes no count; its default must be none held."""
    heartbeat = Heartbeat(client=redis_client, name="beating", config={"batch_size": 5}, interval=60)

    heartbeat.beat()

    [beat] = [w for w in telemetry.read_workers(redis_client) if w["name"] == "beating"]
    assert beat["current"] == ""
    assert beat["config"] == {"batch_size": 5}  # the status endpoint's "config"
