"""With Sentinel, the status endpoint, the dashboard and ``bitrix_doctor`` show the topology, never a password."""

from __future__ import annotations

import contextlib
import json
import signal
from io import StringIO

import pytest
import redis
from django.core.management import call_command
from redis.sentinel import SentinelConnectionPool

from crmbridge.diagnostics.doctor import OK, WARN, check_topology
from crmbridge.redis_io.connection import get_redis
from tests.scale.conftest import SENTINEL_PASSWORD

pytestmark = [pytest.mark.slow, pytest.mark.django_db]  # five redis-server processes

SYNC_URL = "/bitrix/sync/status"
DASHBOARD = "/admin/crmbridge/syncrecord/dashboard/"


def doctor_output(*args: str) -> str:
    out = StringIO()
    with contextlib.suppress(SystemExit):  # no worker runs: the doctor fails, which is not what this is about
        call_command("bitrix_doctor", "--skip-bitrix", *args, stdout=out)
    return out.getvalue()


def test_status_dashboard_and_doctor_show_master_replicas_and_sentinels(via_sentinel, admin_client_api,
                                                                         admin_client):  # fmt: skip
    master = f"127.0.0.1:{via_sentinel.master_port()}"
    replica = f"127.0.0.1:{via_sentinel.replica.port}"
    sentinels = [f"127.0.0.1:{s.port}" for s in via_sentinel.sentinels]

    body = admin_client_api.get(SYNC_URL).json()
    assert body["success"] is True, body  # the status itself read Redis through the sentinels
    redis_facts = body["data"]["redis"]
    topology = redis_facts["topology"]
    assert (topology["mode"], topology["master_name"], topology["master"]) == ("sentinel", "bitrixsync", master)
    assert f"{redis_facts['host']}:{redis_facts['port']}" == master
    assert [r["address"] for r in topology["replicas"]] == [replica]
    assert [(s["address"], s["answers"]) for s in topology["sentinels"]] == [(a, True) for a in sentinels]
    assert topology["sentinels_seen"] == 3

    page = admin_client.get(DASHBOARD).content.decode()
    assert f"Sentinel, master <code>bitrixsync</code> at {master}" in page
    assert replica in page and all(address in page for address in sentinels)

    text, report = doctor_output(), json.loads(doctor_output("--json"))
    assert f"master 'bitrixsync' at {master}/0 (Sentinel)" in text
    found = {check["check"]: check for check in report["checks"]}
    assert found["redis.reachable"]["status"] == OK
    assert found["redis.topology"]["status"] == OK
    assert "3 of 3 configured sentinel(s) answer" in found["redis.topology"]["summary"]

    for shown in (json.dumps(body), page, text, json.dumps(report)):
        assert SENTINEL_PASSWORD not in shown


def test_a_sentinel_that_does_not_answer_is_a_warning(via_sentinel):
    stopped = via_sentinel.sentinels[2]
    stopped.process.send_signal(signal.SIGSTOP)  # hung, not gone: the short timeout must keep the page fast
    try:
        finding = check_topology()
    finally:
        stopped.process.send_signal(signal.SIGCONT)

    assert finding.status == WARN
    assert "1 configured sentinel(s) do not answer" in finding.cause
    assert [s["answers"] for s in finding.details["sentinels"]] == [True, True, False]


def test_every_client_the_project_builds_goes_through_the_sentinels(via_sentinel):
    """Publishing, the rate limits, the Bitrix limiter and the worker's client: all from the one factory.

    ``REDIS_URL`` points where nothing listens (``NOWHERE``): a client built around the
    factory would fail here instead of answering.
    """
    from bitrixsync.throttling import take, throttle_redis
    from crmbridge.bitrix.rate_limit import RedisRateLimiter
    from crmbridge.publishing.publisher import publish_client
    from crmbridge.worker.runner import Worker

    clients = {
        "publisher": publish_client(),
        "throttle": throttle_redis(),
        "bitrix rate limit": RedisRateLimiter.from_settings().client,
        "worker": Worker(name="worker_topology-1").redis,
        "default": get_redis(),
    }
    for name, client in clients.items():
        assert isinstance(client.connection_pool, SentinelConnectionPool), name
        assert client.ping(), name
    assert take("bitrixsync:throttle:test:x", 60, 5, "attempt-1") is None  # the throttle's script ran on the master
    master = redis.Redis(port=via_sentinel.master_port(), decode_responses=True)
    assert master.zcard("bitrixsync:throttle:test:x") == 1
