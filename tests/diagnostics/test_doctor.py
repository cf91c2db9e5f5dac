"""manage.py bitrix_doctor: passes on a healthy setup and finds each of the specification's five common issues."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from crmbridge.diagnostics.doctor import FAIL, OK, SKIP, WARN, DoctorOptions, run_doctor
from crmbridge.models import OutboxEntry
from crmbridge.redis_io import streams, telemetry
from crmbridge.redis_io.connection import get_redis
from tests.diagnostics.helpers import add_dead_letters, beat, create_group, deliver, mark, publish

pytestmark = pytest.mark.django_db

ISSUE = {n: f"Issue {n}:" for n in range(1, 6)}


@pytest.fixture
def healthy(redis_client, sandbox):
    """Everything right: group on both streams, a fresh worker, a reachable portal."""
    create_group(redis_client)
    beat(redis_client)
    return redis_client


def doctor(**options) -> dict[str, object]:
    findings = run_doctor(get_redis(), DoctorOptions(**options))
    return {finding.check: finding for finding in findings}


def run_command(*args) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("bitrix_doctor", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code), out.getvalue()
    return 0, out.getvalue()


def test_healthy_setup_passes_every_check(healthy):
    found = doctor()

    assert {name: f.status for name, f in found.items() if f.status != OK} == {}
    assert found["bitrix.api"].summary.startswith("profile: connected")


def test_healthy_setup_exits_0_and_prints_a_checklist(healthy):
    code, out = run_command()

    assert code == 0
    assert "[ OK ] worker.heartbeat" in out
    assert "FAIL" not in out.replace("0 FAIL", "")


def test_json_output_for_machines(healthy, secret_webhook):
    code, out = run_command("--json", "--skip-bitrix")

    report = json.loads(out)
    assert code == 0
    assert report["status"] == "ok"
    assert {"check", "status", "summary", "cause", "fix", "issue", "details"} <= set(report["checks"][0])
    assert secret_webhook not in out


# Issue 1: worker not running ------------------------------------------------------------


def test_issue_1_no_heartbeat(redis_client, sandbox):
    create_group(redis_client)

    found = doctor()["worker.heartbeat"]

    assert found.status == FAIL
    assert found.issue.startswith(ISSUE[1])
    assert "run_bitrix_worker" in found.fix


def test_issue_1_stale_heartbeat(redis_client, sandbox):
    create_group(redis_client)
    beat(redis_client, age=60)

    found = doctor()["worker.heartbeat"]

    assert (found.status, found.issue[:8]) == (FAIL, ISSUE[1][:8])
    assert "stopped beating" in found.cause


def test_issue_1_worker_disabled(healthy, settings):
    settings.BITRIX_WORKER_ENABLED = False
    telemetry.remove_heartbeat(healthy, "worker_host-1")

    found = doctor()["config.worker_enabled"]

    assert found.status == FAIL
    assert found.issue.startswith(ISSUE[1])


def test_issue_1_exit_code_and_text(redis_client, sandbox):
    create_group(redis_client)

    code, out = run_command("--skip-bitrix")

    assert code == 1
    assert "[FAIL] worker.heartbeat: no worker heartbeat" in out
    assert "specification, Issue 1: Worker Not Running" in out
    assert "fix:" in out


# Issue 2: messages not published --------------------------------------------------------


def test_issue_2_integration_disabled(healthy, settings):
    settings.BITRIX_ENABLED = False

    found = doctor()["config.bitrix_enabled"]

    assert (found.status, found.issue) == (FAIL, "Issue 2: Messages Not Being Published")


def test_issue_2_outbox_not_draining(healthy):
    entry = OutboxEntry.objects.create(fields={"v": "1"}, last_error="ConnectionError: Error 111")
    OutboxEntry.objects.filter(pk=entry.pk).update(created_at=timezone.now() - timedelta(minutes=5))

    found = doctor()["publish.outbox"]

    assert found.status == FAIL
    assert found.issue.startswith(ISSUE[2])
    assert "Error 111" in found.cause


def test_issue_2_redis_unreachable(healthy, private_redis):
    private_redis.stop()

    found = doctor(check_bitrix=False)

    assert found["redis.reachable"].status == FAIL
    assert found["redis.reachable"].issue.startswith(ISSUE[2])
    assert "REDIS_HOST" in found["redis.reachable"].fix
    assert found["worker.heartbeat"].status == SKIP


# Issue 3: messages not processed --------------------------------------------------------


def test_issue_3_backlog_with_nothing_processed(healthy):
    # Published 10 minutes ago (the ID carries the time); the running worker processed none since.
    start_ms = int(time.time() * 1000) - 600_000
    for i in range(12):
        healthy.xadd(
            streams.operations_stream(), {"entity": "deal", "op": "update", "id": str(i + 1)}, id=f"{start_ms}-{i}"
        )

    found = doctor(check_bitrix=False)["queue.backlog"]

    assert found.status == FAIL
    assert found.issue.startswith(ISSUE[3])
    assert f"XPENDING {streams.operations_stream()} bitrix_workers" in found.fix


def test_backlog_being_processed_is_no_alarm(healthy):
    publish(healthy, 12)
    telemetry.count(healthy, "processed", "deal", "update", 30)

    found = doctor(check_bitrix=False)["queue.backlog"]

    assert found.status == OK
    assert "draining: 30 processed" in found.summary


def test_the_threshold_is_an_option(healthy):
    publish(healthy, 12)

    assert doctor(check_bitrix=False, pending_threshold=20)["queue.backlog"].status == OK


def test_issue_3_stuck_pending(healthy):
    publish(healthy, 2)
    (entry_id, _), _ = deliver(healthy, 2, consumer="worker_dead-1")
    healthy.xclaim(streams.operations_stream(), streams.GROUP, "worker_dead-1", 0, [entry_id], idle=600_000)

    found = doctor(check_bitrix=False, stuck_seconds=300)["queue.stuck_pending"]

    assert found.status == FAIL
    assert found.issue.startswith(ISSUE[3])
    assert "worker_dead-1" in found.cause
    assert found.details["stuck"][streams.operations_stream()][0]["id"] == entry_id


# Issue 4: processing failures -----------------------------------------------------------


def test_issue_4_dead_letters(healthy):
    add_dead_letters(healthy, 2)

    found = doctor(check_bitrix=False)["failures.dead_letters"]

    assert found.status == WARN
    assert found.issue.startswith(ISSUE[4])
    assert "ERROR_CORE" in found.summary


def test_issue_4_last_failure_newer_than_last_success(healthy):
    mark(healthy, "success", ago=120)
    mark(healthy, "failure", ago=10, detail="QUERY_LIMIT_EXCEEDED HTTP 503")

    found = doctor(check_bitrix=False)["failures.recent"]

    assert found.status == WARN
    assert "QUERY_LIMIT_EXCEEDED" in found.summary


def test_issue_4_bitrix_refuses_the_webhook(healthy, sandbox):
    sandbox.set_faults(auth_error="expired_token")

    found = doctor()["bitrix.api"]

    assert found.status == FAIL
    assert found.issue.startswith(ISSUE[4])
    assert found.details["kind"] == "config"
    assert "configuration" in found.cause


def test_issue_4_paused_worker(redis_client, sandbox):
    create_group(redis_client)
    beat(redis_client, state="paused", pause_reason="NO_AUTH_FOUND HTTP 401")

    found = doctor()["worker.heartbeat"]

    assert found.status == FAIL
    assert found.issue.startswith(ISSUE[4])
    assert "NO_AUTH_FOUND" in found.summary


def test_issue_4_bad_webhook_url(healthy, settings):
    settings.BITRIX_WEBHOOK_URL = ""

    found = doctor()

    assert found["config.webhook_url"].status == FAIL
    assert found["bitrix.api"].status == SKIP


# Issue 5: consumer group -----------------------------------------------------------------


def test_issue_5_stream_without_group(redis_client, sandbox):
    beat(redis_client)
    publish(redis_client, 1)

    found = doctor()[f"streams.group:{streams.operations_stream()}"]

    assert found.status == FAIL
    assert found.issue.startswith(ISSUE[5])
    assert "XGROUP CREATE" in found.fix


def test_issue_5_group_deleted_under_a_running_system(healthy):
    healthy.xgroup_destroy(streams.operations_stream(), streams.GROUP)

    assert doctor(check_bitrix=False)[f"streams.group:{streams.operations_stream()}"].status == FAIL


def test_strict_turns_warnings_into_failures(healthy):
    add_dead_letters(healthy, 1)

    assert run_command("--skip-bitrix")[0] == 0
    assert run_command("--skip-bitrix", "--strict")[0] == 1


# Issue 20: existing customers ----------------------------------------------------------------


def test_contact_matching_needs_the_duplicate_search(healthy, sandbox, settings):
    """One line naming BITRIX_CONTACT_MATCH and the fix when the webhook may not call findbycomm."""
    assert doctor()["bitrix.contact_match"].status == OK
    sandbox.set_faults(denied_methods=["crm.duplicate.findbycomm"])

    found = doctor()["bitrix.contact_match"]

    assert found.status == FAIL
    assert found.summary.startswith("BITRIX_CONTACT_MATCH=email,phone: the webhook may not call ")
    assert "BITRIX_CONTACT_MATCH=off" in found.summary and "BITRIX_CONTACT_MATCH=off" in found.fix
    settings.BITRIX_CONTACT_MATCH = ()
    assert doctor()["bitrix.contact_match"].status == OK  # off: nothing to call


def test_contact_matching_check_leaves_a_refused_webhook_to_the_api_check(healthy, sandbox):
    sandbox.set_faults(auth_error="expired_token")

    assert doctor()["bitrix.contact_match"].status == OK
    assert doctor()["bitrix.api"].status == FAIL
