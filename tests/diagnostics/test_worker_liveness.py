"""Issue 21 item 2: ``bitrix_worker_alive``, the worker container's liveness probe (deploy/k8s)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from crmbridge.worker.runner import Worker
from tests.diagnostics.helpers import HEARTBEAT, beat
from tests.worker.helpers import fast_config


def probe(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("bitrix_worker_alive", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code), out.getvalue()
    return 0, out.getvalue()


def test_a_real_workers_heartbeat_on_this_host_is_alive(redis_client):
    Worker(fast_config(), name="worker_probe-1").heartbeat.beat(force=True)

    code, output = probe()

    assert code == 0
    assert output.startswith("alive: worker_probe-1 running")


def test_a_paused_worker_is_alive(redis_client):
    beat(redis_client, "worker_pod-1", state="paused", host="pod-a")

    assert probe("--host", "pod-a")[0] == 0


def test_a_worker_that_stopped_beating_is_not_alive(redis_client):
    beat(redis_client, "worker_pod-1", host="pod-a", age=HEARTBEAT * 2.5)

    code, output = probe("--host", "pod-a")

    assert code == 1
    assert output.startswith("NOT ALIVE: worker_pod-1 stopped beating")


def test_only_this_hosts_worker_counts(redis_client):
    beat(redis_client, "worker_pod-2", host="pod-b")

    code, output = probe("--host", "pod-a")

    assert code == 1
    assert "no worker heartbeat from host pod-a" in output


def test_redis_unreachable_passes_because_a_restart_would_not_help(private_redis):
    private_redis.stop()

    code, output = probe("--host", "pod-a")

    assert code == 0
    assert "Redis unreachable" in output


@pytest.mark.parametrize("state", ["running", "stopping"])
def test_a_fresh_heartbeat_in_any_state_is_alive(redis_client, state):
    beat(redis_client, "worker_pod-1", state=state, host="pod-a")

    assert probe("--host", "pod-a")[0] == 0
