"""bitrix_doctor raises no false alarm: every healthy state gives 0 FAIL and 0 WARN.

"No worker running" is one FAIL, ``worker.heartbeat``: the queue it leaves
behind is its consequence, not a second alarm. Redis down is one FAIL,
``redis.reachable``, whose fix is about Redis.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from crmbridge.diagnostics.doctor import FAIL, OK, WARN, DoctorOptions, run_doctor
from crmbridge.models import OutboxEntry
from crmbridge.publishing import outbox
from crmbridge.publishing.messages import Operation
from crmbridge.redis_io import streams, telemetry
from crmbridge.redis_io.connection import get_redis
from tests.diagnostics.helpers import beat, create_group, deliver, publish

pytestmark = pytest.mark.django_db


def alarms(**options) -> dict[str, tuple[str, str]]:
    """Every check that WARNs or FAILs: name -> (status, summary)."""
    findings = run_doctor(get_redis(), DoctorOptions(**options))
    return {f.check: (f.status, f.summary) for f in findings if f.status in (WARN, FAIL)}


def publish_aged(client, count: int, *, age_seconds: float) -> None:
    """``count`` operations published ``age_seconds`` ago (stream IDs carry the time)."""
    start_ms = int((time.time() - age_seconds) * 1000)
    for i in range(count):
        client.xadd(streams.operations_stream(), Operation("deal", "update", i + 1).to_fields(), id=f"{start_ms}-{i}")


@pytest.fixture
def running_worker(redis_client, sandbox):
    create_group(redis_client)
    beat(redis_client)
    return redis_client


def test_idle_with_everything_acknowledged(running_worker):
    publish(running_worker, 30)
    for entry_id, _ in deliver(running_worker, 30):
        running_worker.xack(streams.operations_stream(), streams.GROUP, entry_id)
    telemetry.count(running_worker, "processed", "deal", "update", 30)

    assert alarms() == {}


def test_a_burst_queued_for_a_running_worker(running_worker):
    publish(running_worker, 40)  # far above the threshold, published a moment ago
    deliver(running_worker, 10)  # the worker has the first chunk in hand

    assert alarms() == {}


def test_a_long_queue_a_running_worker_is_draining(running_worker):
    publish_aged(running_worker, 40, age_seconds=600)
    telemetry.count(running_worker, "processed", "deal", "update", 100)

    assert alarms() == {}


def test_an_outbox_entry_already_in_the_stream_awaiting_its_deferred_delete(running_worker):
    with transaction.atomic():
        (entry,) = outbox.write_entries([Operation("deal", "create", 7)], claimed_by="web-1", lease_seconds=30)
    outbox.publish_entries(get_redis(), [entry], defer_delete=True)
    outbox.sent_rows.take()  # the web process went idle: nothing deletes the row until a relay comes by
    long_ago = timezone.now() - timedelta(minutes=10)
    OutboxEntry.objects.filter(pk=entry.pk).update(created_at=long_ago, claimed_until=long_ago)

    assert alarms() == {}
    summary = {f.check: f for f in run_doctor(get_redis(), DoctorOptions())}["publish.outbox"].summary
    assert "already in Redis" in summary


def test_no_worker_on_a_fresh_install_is_one_fail(redis_client, sandbox):
    assert set(alarms()) == {"worker.heartbeat"}


def test_no_worker_with_a_queue_and_a_dead_workers_pending_is_one_fail(redis_client, sandbox):
    create_group(redis_client)
    publish_aged(redis_client, 40, age_seconds=900)
    (entry_id, _), *_ = deliver(redis_client, 5, consumer="worker_gone-9")
    redis_client.xclaim(streams.operations_stream(), streams.GROUP, "worker_gone-9", 0, [entry_id], idle=900_000)
    telemetry.count(redis_client, "processed", "deal", "update", 3)  # it worked a little before dying

    found = alarms()

    assert set(found) == {"worker.heartbeat"}
    assert found["worker.heartbeat"][0] == FAIL


def test_redis_down_is_one_fail_with_a_fix_about_redis(running_worker, private_redis, settings):
    private_redis.stop()

    findings = {f.check: f for f in run_doctor(get_redis(), DoctorOptions(check_bitrix=False))}

    bad = {name for name, f in findings.items() if f.status in (WARN, FAIL)}
    assert bad == {"redis.reachable"}
    fix = findings["redis.reachable"].fix
    assert settings.BITRIX_ENABLED is True
    assert "BITRIX_ENABLED" not in fix
    assert fix.startswith("Start Redis or point the app at it")
    assert "redis-cli" in fix


def test_the_enable_hint_appears_only_when_the_integration_is_off(running_worker, settings):
    settings.BITRIX_ENABLED = False

    findings = {f.check: f for f in run_doctor(get_redis(), DoctorOptions(check_bitrix=False))}

    assert findings["config.bitrix_enabled"].fix.startswith("Set BITRIX_ENABLED=true")


def test_the_stream_summary_puts_unacknowledged_first(running_worker):
    publish(running_worker, 5)
    for entry_id, _ in deliver(running_worker, 3):
        running_worker.xack(streams.operations_stream(), streams.GROUP, entry_id)

    findings = {f.check: f for f in run_doctor(get_redis(), DoctorOptions(check_bitrix=False))}

    summary = findings[f"streams.group:{streams.operations_stream()}"].summary
    assert summary.startswith(f"{streams.operations_stream()}: 2 unacknowledged")
    assert "5 entries kept" in summary
    assert findings[f"streams.group:{streams.operations_stream()}"].status == OK


def test_the_doctor_on_a_web_host_with_the_worker_disabled_while_workers_run_elsewhere(running_worker, settings):
    settings.BITRIX_WORKER_ENABLED = False  # a web-only host; the workers run with their own environment

    assert alarms() == {}
