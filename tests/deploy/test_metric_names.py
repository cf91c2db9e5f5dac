"""Issue 21 items 4 and 5: every metric an alert rule or the Grafana dashboard names is exported by /metrics.

The endpoint is scraped for real, after state that makes every family present:
a group with delivered and undelivered entries, dead letters, a reconciliation
count, success and failure marks, and the heartbeat of a real ``Worker`` whose
portal client has made real requests to the sandbox -- one the portal accepted and
one it refused (``bitrix_calls``, ``bitrix_call_seconds_sum``, ``bitrix_rejects``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.errors import BitrixError
from crmbridge.redis_io import telemetry
from crmbridge.worker.runner import Worker
from tests.diagnostics.helpers import add_dead_letters, create_group, deliver, mark, publish
from tests.worker.helpers import fast_config

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "metrics-token-for-the-names-test"
NAME = re.compile(r"\bbitrixsync_[a-z_]+[a-z]\b")
pytestmark = pytest.mark.django_db


def names_in_rules() -> set[str]:
    return set(NAME.findall((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()))


def names_in_dashboards() -> set[str]:
    found = set()
    for path in (ROOT / "deploy" / "grafana").glob("*.json"):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                found |= set(NAME.findall(target["expr"]))
    return found


@pytest.fixture
def scraped(settings, redis_client, sandbox) -> dict[str, dict]:
    """Sample name -> (labels, value) of one sample, from GET /metrics after the state above."""
    settings.BITRIX_METRICS_TOKEN = TOKEN
    create_group(redis_client)
    publish(redis_client, 4)
    deliver(redis_client, 1)
    add_dead_letters(redis_client, 1)
    telemetry.count(redis_client, "reconciled", "deal", "create")
    mark(redis_client, "success")
    mark(redis_client, "failure")
    portal = BitrixClient(sandbox.webhook_url)
    worker = Worker(fast_config(), name="worker_names-1", bitrix=portal)
    portal.add("deal", {"TITLE": "metrics"})
    with pytest.raises(BitrixError):
        portal.call("crm.no_such.method")
    worker.heartbeat.beat(force=True)

    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    portal.close()
    return {
        sample.name: (sample.labels, sample.value)
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def test_the_real_worker_reports_its_portal_requests(scraped):
    worker = {"worker": "worker_names-1"}
    assert scraped["bitrixsync_bitrix_call_seconds_count"] == (worker, 2)
    assert scraped["bitrixsync_bitrix_call_seconds_sum"][1] > 0
    assert scraped["bitrixsync_bitrix_rejects_total"] == (worker, 1)


def test_every_metric_the_rules_and_dashboards_name_is_exported(scraped):
    named = names_in_rules() | names_in_dashboards()
    assert len(names_in_rules()) >= 8 and len(names_in_dashboards()) >= 10

    missing = sorted(named - set(scraped))

    assert not missing, f"named by deploy/prometheus or deploy/grafana, not exported by /metrics: {missing}"
