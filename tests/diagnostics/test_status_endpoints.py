"""GET /bitrix/sync/worker/status and GET /bitrix/sync/status: shapes, meanings, permissions, Redis down."""

from __future__ import annotations

import time

import pytest

from crmbridge.models import OutboxEntry
from crmbridge.publishing.outbox import waiting_entries
from crmbridge.redis_io import contact_counts, streams, telemetry
from tests.diagnostics.helpers import beat, create_group, deliver, mark, publish

pytestmark = pytest.mark.django_db

WORKER_URL = "/bitrix/sync/worker/status"
SYNC_URL = "/bitrix/sync/status"

SPEC_WORKER_KEYS = {
    "worker_enabled", "worker_running", "worker_task_exists", "worker_task_status",
    "pending_messages_count", "worker_config",
}  # fmt: skip
WORKER_EXTRA_KEYS = {
    "pending_delivered", "lag", "oldest_pending_age_seconds", "pause_reason", "live_workers", "workers",
    "last_success", "last_failure", "key_problems",
}  # fmt: skip
WORKER_ROW_KEYS = {
    "name", "host", "pid", "started_at", "last_beat", "last_beat_age_seconds", "fresh", "state",
    "pause_reason", "current", "processed", "retried", "dead_lettered",
}  # fmt: skip
SPEC_SYNC_KEYS = {"operations_stream", "webhooks_stream", "total_messages", "bitrix_configured"}
SYNC_EXTRA_KEYS = {
    "bitrix_enabled", "queues", "dead_letter_count", "outbox_backlog", "last_success", "last_failure", "redis",
    "key_problems", "contacts",
}  # fmt: skip
QUEUE_KEYS = {
    "stream", "group", "group_exists", "lag", "pending", "unacknowledged", "consumers",
    "oldest_pending_age_seconds", "last_delivered_id",
}  # fmt: skip


def test_worker_status_has_the_specification_shape(admin_client_api, redis_client):
    create_group(redis_client)
    beat(redis_client)

    body = admin_client_api.get(WORKER_URL).json()

    assert set(body) == {"success", "message", "data"}
    assert body["success"] is True
    assert body["message"] == "Worker status retrieved"
    data = body["data"]
    assert set(data) == SPEC_WORKER_KEYS | WORKER_EXTRA_KEYS
    assert isinstance(data["worker_enabled"], bool)
    assert isinstance(data["worker_running"], bool)
    assert isinstance(data["worker_task_exists"], bool)
    assert data["worker_task_status"] in {"running", "paused", "stale", "stopped"}
    assert isinstance(data["pending_messages_count"], int)
    assert data["worker_config"] == {"max_retries": 5, "batch_size": 10, "poll_interval": 1.0}
    assert isinstance(data["worker_config"]["poll_interval"], float)
    assert set(data["workers"][0]) == WORKER_ROW_KEYS
    assert isinstance(data["workers"][0]["pid"], int)


def test_sync_status_has_the_specification_shape(admin_client_api, redis_client, secret_webhook):
    create_group(redis_client)
    publish(redis_client, 3)
    redis_client.xadd(streams.webhooks_stream(), {"event": "ONCRMDEALUPDATE"})

    body = admin_client_api.get(SYNC_URL).json()

    assert set(body) == {"success", "message", "data"}
    assert body["success"] is True
    assert body["message"] == "Sync status retrieved"
    data = body["data"]
    assert set(data) == SPEC_SYNC_KEYS | SYNC_EXTRA_KEYS
    for key in ("operations_stream", "webhooks_stream"):
        assert set(data[key]) == {"length", "groups", "last_id"}
        assert isinstance(data[key]["last_id"], str)
    assert data["operations_stream"]["length"] == 3
    assert data["operations_stream"]["groups"] == 1
    assert data["webhooks_stream"]["length"] == 1
    assert data["total_messages"] == 4
    assert data["bitrix_configured"] is True
    assert set(data["queues"]) == {"operations", "webhooks"}
    assert set(data["queues"]["operations"]) == QUEUE_KEYS
    assert data["redis"]["password_set"] is False


def test_sync_status_counts_how_contacts_came_to_be(admin_client_api, redis_client):
    """Issue 20, item 8: adopted by e-mail / phone, ambiguous, created; shared by every worker (Redis)."""
    assert admin_client_api.get(SYNC_URL).json()["data"]["contacts"] == {
        "adopted_email": 0, "adopted_phone": 0, "ambiguous": 0, "created": 0,
    }  # fmt: skip
    contact_counts.add(redis_client, {"adopted_email": 2, "ambiguous": 1})
    contact_counts.add(redis_client, {"adopted_phone": 1, "created": 5})  # another worker

    data = admin_client_api.get(SYNC_URL).json()["data"]

    assert data["contacts"] == {"adopted_email": 2, "adopted_phone": 1, "ambiguous": 1, "created": 5}


def test_missing_streams_are_empty_not_errors(admin_client_api):
    data = admin_client_api.get(SYNC_URL).json()["data"]

    assert data["operations_stream"] == {"length": 0, "groups": 0, "last_id": None}
    assert data["webhooks_stream"] == {"length": 0, "groups": 0, "last_id": None}
    assert data["total_messages"] == 0
    assert data["queues"]["operations"]["group_exists"] is False


def test_pending_count_is_delivered_plus_undelivered(admin_client_api, redis_client):
    create_group(redis_client)
    publish(redis_client, 7)
    deliver(redis_client, 3)
    redis_client.xack(streams.operations_stream(), streams.GROUP, deliver(redis_client, 1)[0][0])

    data = admin_client_api.get(WORKER_URL).json()["data"]

    assert data["pending_delivered"] == 3
    assert data["lag"] == 3
    assert data["pending_messages_count"] == 6
    assert data["oldest_pending_age_seconds"] >= 0


def test_group_missing_counts_every_entry_as_waiting(admin_client_api, redis_client):
    publish(redis_client, 4)

    worker = admin_client_api.get(WORKER_URL).json()["data"]
    sync = admin_client_api.get(SYNC_URL).json()["data"]

    assert worker["pending_messages_count"] == 4
    assert sync["queues"]["operations"]["group_exists"] is False
    assert sync["operations_stream"]["groups"] == 0


def test_worker_status_follows_stopped_running_paused_and_stale(admin_client_api, redis_client):
    def status():
        return admin_client_api.get(WORKER_URL).json()["data"]

    stopped = status()
    assert (stopped["worker_running"], stopped["worker_task_exists"], stopped["worker_task_status"]) == (
        False, False, "stopped",
    )  # fmt: skip

    beat(redis_client, "worker_a-1", age=30)
    stale = status()
    assert (stale["worker_running"], stale["worker_task_exists"], stale["worker_task_status"]) == (
        False, True, "stale",
    )  # fmt: skip

    beat(redis_client, "worker_b-2", state="paused", pause_reason="NO_AUTH_FOUND: webhook refused")
    paused = status()
    assert paused["worker_running"] is True
    assert paused["worker_task_status"] == "paused"
    assert paused["pause_reason"] == "NO_AUTH_FOUND: webhook refused"

    beat(redis_client, "worker_c-3")
    running = status()
    assert running["worker_task_status"] == "running"
    assert running["live_workers"] == 2
    assert {w["name"]: w["state"] for w in running["workers"]} == {
        "worker_a-1": "stale", "worker_b-2": "paused", "worker_c-3": "running",
    }  # fmt: skip


def test_a_worker_that_died_without_goodbye_is_stale(admin_client_api, redis_client):
    # Its hash expired; it is still listed in the index (a clean stop removes both).
    redis_client.zadd(telemetry.workers_index_key(), {"worker_gone-9": time.time() - 20})

    data = admin_client_api.get(WORKER_URL).json()["data"]

    assert data["worker_task_status"] == "stale"
    assert data["worker_task_exists"] is True
    assert data["worker_running"] is False


def test_extras_report_marks_dead_letters_and_outbox(admin_client_api, redis_client):
    mark(redis_client, "success", ago=60, detail="2 message(s) synced")
    mark(redis_client, "failure", ago=5, detail="QUERY_LIMIT_EXCEEDED")
    redis_client.xadd(streams.dead_letter_stream(), {"reason": "manual", "payload": "{}"})
    before = waiting_entries().count()  # what the relay would send; rows a publisher holds are not a backlog
    OutboxEntry.objects.create(fields={"entity": "deal", "op": "create", "id": "1"})

    sync = admin_client_api.get(SYNC_URL).json()["data"]
    worker = admin_client_api.get(WORKER_URL).json()["data"]

    assert sync["dead_letter_count"] == 1
    assert sync["outbox_backlog"] == before + 1
    assert sync["last_failure"]["detail"] == "QUERY_LIMIT_EXCEEDED"
    assert worker["last_success"]["detail"] == "2 message(s) synced"
    assert worker["last_success"]["at"].endswith("+00:00")


@pytest.mark.parametrize("url", [WORKER_URL, SYNC_URL])
def test_anonymous_gets_401(anon_client, url):
    response = anon_client.get(url)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("url", [WORKER_URL, SYNC_URL])
def test_non_staff_gets_403(alice_client, url):
    assert alice_client.get(url).status_code == 403


@pytest.mark.parametrize("url", [WORKER_URL, SYNC_URL])
def test_staff_session_works_too(staff_browser, url):
    assert staff_browser.get(url).status_code == 200


@pytest.mark.parametrize(("url", "message"), [(WORKER_URL, "Worker status"), (SYNC_URL, "Sync status")])
def test_redis_down_answers_200_with_the_reason(admin_client_api, private_redis, url, message, settings):
    settings.REDIS_PASSWORD = "hunter2-redis"
    keys_up = set(admin_client_api.get(url).json()["data"])
    private_redis.stop()

    response = admin_client_api.get(url)

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is False
    assert "Redis is unreachable" in body["message"]
    assert set(body["data"]) == keys_up
    assert "hunter2-redis" not in response.content.decode()


@pytest.mark.parametrize("url", [WORKER_URL, SYNC_URL])
def test_no_secret_in_any_answer(admin_client_api, redis_client, secret_webhook, url):
    beat(redis_client, pause_reason=f"refused https://x/rest/1/{secret_webhook}/", state="paused")
    mark(redis_client, "failure", detail=f"call to https://x/rest/1/{secret_webhook}/crm.deal.add failed")

    text = admin_client_api.get(url).content.decode()

    assert secret_webhook not in text


def test_without_sentinel_the_topology_says_single_redis(admin_client_api, private_redis):
    topology = admin_client_api.get(SYNC_URL).json()["data"]["redis"]["topology"]

    assert topology["mode"] == "single"
    assert topology["description"].startswith("single Redis")
    assert topology["master"] == f"127.0.0.1:{private_redis.port}"
    assert (topology["replicas"], topology["sentinels"], topology["sentinels_seen"]) == ([], [], 0)
