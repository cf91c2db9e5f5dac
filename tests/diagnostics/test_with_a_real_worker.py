"""The status endpoints, metrics and the doctor watching a real ``run_bitrix_worker`` against the sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from crmbridge.diagnostics.doctor import FAIL, OK, DoctorOptions, run_doctor
from crmbridge.redis_io import streams
from crmbridge.redis_io.connection import get_redis
from orders.models import Order
from tests.conftest import wait_for
from tests.diagnostics.helpers import create_group
from tests.worker.helpers import database_url

ROOT = Path(__file__).resolve().parents[2]
WORKER_URL = "/bitrix/sync/worker/status"


def queue_orders(owner, count: int) -> None:
    """New orders: the project's signals publish their operations after commit."""
    for _ in range(count):
        Order.objects.create(owner=owner, service_id="cnc-milling", quantity=2)


def checks() -> dict:
    return {f.check: f.status for f in run_doctor(get_redis(), DoctorOptions(check_bitrix=False))}


@pytest.mark.django_db(transaction=True)  # the worker closes connections between iterations
def test_status_and_doctor_follow_a_worker_run(admin_client_api, alice, sandbox):
    create_group(get_redis())
    queue_orders(alice, 12)
    published = get_redis().xlen(streams.operations_stream())  # the orders, alice and the admin
    before = admin_client_api.get(WORKER_URL).json()["data"]
    assert before["pending_messages_count"] == published >= 12
    # No worker yet: one alarm, the worker's; the backlog is its consequence, not a second FAIL.
    assert checks()["worker.heartbeat"] == FAIL
    assert checks()["queue.backlog"] == OK

    call_command("run_bitrix_worker", "--once", "--poll-interval", "0.05")

    after = admin_client_api.get(WORKER_URL).json()["data"]
    assert after["pending_messages_count"] == 0
    assert after["last_success"] is not None
    assert after["worker_task_status"] == "stopped"  # a clean exit removes its heartbeat
    assert checks()["queue.backlog"] == OK
    assert Order.objects.filter(bitrix_deal_id__isnull=False).count() == 12


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow  # a separate process: run once, on SQLite (see test.sh)
def test_a_running_worker_process_is_reported_live(admin_client_api, sandbox):
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "BITRIX_WEBHOOK_URL": settings.BITRIX_WEBHOOK_URL,
        "BITRIX_WORKER_HEARTBEAT": "0.5",
        "BITRIX_WORKER_POLL_INTERVAL": "0.1",
    }
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "run_bitrix_worker", "--name", "worker_diag-1"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def running_status():
            data = admin_client_api.get(WORKER_URL).json()["data"]
            return data if data["worker_running"] else None

        data = wait_for(running_status, timeout=15, what="worker_running")
        assert data["worker_task_status"] == "running"
        assert [w["name"] for w in data["workers"]] == ["worker_diag-1"]
        assert checks()["worker.heartbeat"] == OK
        assert checks()[f"streams.group:{streams.operations_stream()}"] == OK
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    gone = admin_client_api.get(WORKER_URL).json()["data"]
    assert (gone["worker_running"], gone["worker_task_status"]) == (False, "stopped")
