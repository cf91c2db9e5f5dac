"""Issue 19 item 6: a project key of the wrong type is named (key, type, fix) by status, dashboard and doctor.

Before, ``SET bitrix:webhooks x`` made all three say "Redis is unreachable".
"""

from __future__ import annotations

import pytest
import redis

from crmbridge.diagnostics.doctor import FAIL, OK, DoctorOptions, run_doctor
from crmbridge.redis_io import streams
from crmbridge.redis_io.connection import get_redis
from tests.diagnostics.helpers import beat, create_group, publish

pytestmark = pytest.mark.django_db

HOOKS = "bitrix:webhooks"


@pytest.fixture
def webhooks_is_a_string(redis_client):
    create_group(redis_client, streams.operations_stream())
    publish(redis_client, 3)
    beat(redis_client)
    redis_client.set(HOOKS, "x")
    return redis_client


def named(problem: dict, key: str = HOOKS, kind: str = "string") -> bool:
    return problem["key"] == key and problem["type"] == kind and "RENAME" in problem["fix"]


@pytest.mark.parametrize("url", ["/bitrix/sync/status", "/bitrix/sync/worker/status"])
def test_status_names_the_key_and_keeps_the_other_streams_facts(admin_client_api, webhooks_is_a_string, url):
    body = admin_client_api.get(url).json()

    assert "unreachable" not in body["message"]
    assert f"{HOOKS} is a string, not a stream" in body["message"]
    (problem,) = body["data"]["key_problems"]
    assert (
        named(problem)
        and f"redis-cli -h 127.0.0.1 -p {get_redis().connection_pool.connection_kwargs['port']}" in problem["fix"]
    )
    if url == "/bitrix/sync/status":
        assert body["data"]["operations_stream"]["length"] == 3
        assert body["data"]["webhooks_stream"] is None
        assert body["data"]["queues"]["operations"]["lag"] == 3
    else:
        assert body["data"]["pending_messages_count"] == 3
        assert body["data"]["worker_task_status"] == "running"


def test_status_without_a_problem_lists_none(admin_client_api, redis_client):
    body = admin_client_api.get("/bitrix/sync/status").json()

    assert body["success"] is True and body["data"]["key_problems"] == []


def test_doctor_names_the_key_its_type_and_the_fix(webhooks_is_a_string):
    found = {f.check: f for f in run_doctor(get_redis(), DoctorOptions(check_bitrix=False))}

    assert found["redis.reachable"].status == OK
    hooks = found[f"streams.group:{HOOKS}"]
    assert hooks.status == FAIL and f"{HOOKS} is a string, not a stream" in hooks.summary
    assert f"RENAME {HOOKS}" in hooks.fix and "redis-cli" in hooks.fix
    assert not [f for f in found.values() if "unreachable" in f.summary], [f.summary for f in found.values()]
    assert found["queue.backlog"].details[streams.operations_stream()]["lag"] == 3


def test_doctor_names_a_dead_letter_key_of_the_wrong_type(redis_client):
    create_group(redis_client)
    redis_client.rpush("bitrix:dead", "x")

    found = {f.check: f for f in run_doctor(get_redis(), DoctorOptions(check_bitrix=False))}

    dead = found["failures.dead_letters"]
    assert dead.status == FAIL and "bitrix:dead is a list, not a stream" in dead.summary
    assert "RENAME bitrix:dead" in dead.fix


def test_the_dashboard_names_the_key_and_shows_the_rest(staff_browser, webhooks_is_a_string):
    for path in ("", "?partial=live", "dead-letters/", "pending/?stream=webhooks"):
        response = staff_browser.get("/admin/crmbridge/syncrecord/dashboard/" + path)
        assert response.status_code == 200, path
        page = response.content.decode()
        assert "unreachable" not in page, path
    live = staff_browser.get("/admin/crmbridge/syncrecord/dashboard/").content.decode()
    assert f"{HOOKS} is a string, not a stream" in live and f"RENAME {HOOKS}" in live


def test_a_refused_command_is_not_called_unreachable(redis_client):
    from crmbridge.diagnostics.redis_errors import redis_error_reason

    redis_client.set(HOOKS, "x")
    try:
        redis_client.xlen(HOOKS)
    except redis.ResponseError as exc:  # the real error Redis gives
        wrong = redis_error_reason(exc)
    try:
        redis_client.xrange(HOOKS + "2", min="not-an-id", max="+")
    except redis.ResponseError as exc:
        refused = redis_error_reason(exc)

    assert wrong.startswith("a Redis key holds the wrong type of value (") and "unreachable" not in wrong
    assert refused.startswith("Redis refused the command (") and "unreachable" not in refused


def test_metrics_still_answer(staff_browser, webhooks_is_a_string):
    response = staff_browser.get("/metrics")

    assert response.status_code == 200
    assert 'bitrixsync_stream_length{stream="bitrix:operations"} 3.0' in response.content.decode()


def test_operations_held_in_the_outbox_by_a_wrong_type_key_say_so(alice, redis_client):
    """The web app cannot XADD to a string: the outbox keeps the order; the doctor names why, not "unreachable"."""
    from datetime import timedelta

    from django.utils import timezone

    from crmbridge.models import OutboxEntry
    from crmbridge.publishing.outbox import relay_outbox
    from orders.models import Order

    redis_client.set("bitrix:operations", "x")
    Order.objects.create(owner=alice, service_id="welding", quantity=1)
    OutboxEntry.objects.update(claimed_until=None, created_at=timezone.now() - timedelta(minutes=5))
    relay_outbox()  # Redis refuses it: kept, with the error

    found = {f.check: f for f in run_doctor(get_redis(), DoctorOptions(check_bitrix=False))}["publish.outbox"]

    assert found.status == FAIL
    assert "bitrix:operations is a string, not a stream" in found.cause and "unreachable" not in found.cause
    assert "streams.group:bitrix:operations" in found.fix
