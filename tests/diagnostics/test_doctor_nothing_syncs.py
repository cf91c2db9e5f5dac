"""Issue 19 item 11: the health check fails while nothing syncs, and each fix text fits its state.

``bitrix_doctor --skip-bitrix`` is the worker's Compose health check. With a
wrong webhook host every message was dead-lettered within seconds and it still
exited 0. A real worker runs in a thread against a closed port / the sandbox.
"""

from __future__ import annotations

import threading
from io import StringIO

import pytest
from django.core.management import call_command

from crmbridge.diagnostics.doctor import FAIL, DoctorOptions, run_doctor
from crmbridge.redis_io import streams
from crmbridge.redis_io.connection import get_redis
from crmbridge.worker.runner import Worker
from devtools.testing.ports import free_port
from orders.models import Order
from tests.conftest import wait_for
from tests.worker.helpers import fast_config

pytestmark = pytest.mark.django_db(transaction=True)


def health_check() -> tuple[int, str]:
    """``manage.py bitrix_doctor --skip-bitrix``, as Compose runs it: exit code and output."""
    out = StringIO()
    try:
        call_command("bitrix_doctor", "--skip-bitrix", stdout=out)
    except SystemExit as exc:
        return int(exc.code), out.getvalue()
    return 0, out.getvalue()


def findings() -> dict:
    return {f.check: f for f in run_doctor(get_redis(), DoctorOptions(check_bitrix=False))}


@pytest.fixture
def worker_thread():
    """Start a real worker in a thread (``start(**config)``); stopped after the test."""
    started: list[tuple[Worker, threading.Thread]] = []

    def start(**config) -> Worker:
        worker = Worker(fast_config(**config))
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        started.append((worker, thread))
        return worker

    yield start
    for worker, thread in started:
        worker.shutdown = True
        thread.join(10)


def dead_letters(redis_client) -> int:
    return redis_client.xlen(streams.dead_letter_stream())


def test_a_wrong_webhook_host_makes_the_health_check_fail(settings, alice, redis_client, worker_thread):
    settings.BITRIX_WEBHOOK_URL = f"http://127.0.0.1:{free_port()}/rest/1/abcdef123456/"  # nothing listens
    for i in range(3):
        Order.objects.create(owner=alice, service_id="welding", quantity=i + 1)
    worker_thread(max_retries=2)

    wait_for(lambda: dead_letters(redis_client) >= 4, 30, "every message dead-lettered")
    code, out = health_check()

    assert code == 1, out
    found = findings()
    assert found["worker.heartbeat"].status != FAIL  # the worker is alive: the failures are the alarm
    assert found["failures.recent"].status == FAIL and "synced" in found["failures.recent"].summary
    assert found["failures.dead_letters"].status == FAIL
    assert "requeue" in found["failures.dead_letters"].fix


def test_an_expired_webhook_pauses_and_fails_with_a_fix_that_fits(sandbox, alice, redis_client, worker_thread):
    sandbox.set_faults(auth_error="expired_token")
    Order.objects.create(owner=alice, service_id="welding", quantity=1)
    worker = worker_thread()
    wait_for(lambda: worker.paused_reason, 20, "worker paused")

    code, out = health_check()

    assert code == 1, out
    assert dead_letters(redis_client) == 0
    found = findings()
    paused = found["worker.heartbeat"]
    assert paused.status == FAIL and "resumes by itself" in paused.fix and "BITRIX_WEBHOOK_URL" in paused.fix
    shown = {name: f.fix for name, f in found.items() if f.status != "OK" and f.fix}
    assert not [name for name, fix in shown.items() if "requeue" in fix.lower()], shown


def test_a_fix_mentions_requeueing_only_the_dead_letters_there_are(sandbox, alice, redis_client, worker_thread):
    redis_client.xadd(streams.operations_stream(), {"v": "1", "entity": "deal", "op": "update", "id": "²"})
    sandbox.set_faults(auth_error="expired_token")
    Order.objects.create(owner=alice, service_id="welding", quantity=1)
    worker = worker_thread()
    wait_for(lambda: worker.paused_reason and dead_letters(redis_client) == 1, 20, "paused with a dead letter")

    paused = findings()["worker.heartbeat"]

    assert "requeue the 1 dead letter" in paused.fix


def test_one_poisoned_message_in_a_quiet_system_is_no_alarm(sandbox, alice, redis_client, worker_thread):
    worker_thread()
    redis_client.xadd(streams.operations_stream(), {"v": "1", "entity": "deal", "op": "update", "id": "²"})
    wait_for(lambda: dead_letters(redis_client) == 1, 20, "dead-lettered")

    code, out = health_check()

    assert code == 0, out
