"""Issue 21 item 4: every rule of deploy/prometheus/alerts.yml, unit-tested with ``promtool test rules``.

Each case gives input series (as ``/metrics`` exports them, from two web pods where
it matters: every pod exports the same numbers) and says when the alert fires and
when it must not. The expected annotations are the rule's own, with the labels
filled in (promtool compares them exactly), so the cases state only what matters.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.promtool import promtool

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
OPS = 'stream="bitrix:operations"'

# alert -> (input series, [(eval time, labels of each expected alert or None for "fires not")...])
CASES: dict[str, tuple[dict[str, str], list[tuple[str, list[dict] | None]]]] = {
    "BitrixsyncWorkerDown": (
        {"bitrixsync_workers_live": "1 1 0 0 0 0 0 0", "bitrixsync_redis_up": "1x8"},
        [("3m", None), ("5m", [{}])],
    ),
    "BitrixsyncBacklogGrowing": (
        {f"bitrixsync_group_lag{{{OPS}}}": "0+10x30", f'bitrixsync_group_lag{{{OPS},instance="web-2"}}': "0+10x30"},
        [("5m", None), ("20m", [{"stream": "bitrix:operations"}])],
    ),
    "BitrixsyncOldestPendingStuck": (
        {f"bitrixsync_oldest_pending_age_seconds{{{OPS}}}": "0+60x25"},
        [("12m", None), ("20m", [{"stream": "bitrix:operations"}])],
    ),
    "BitrixsyncDeadLettersIncreasing": (
        {"bitrixsync_dead_letters": "2 2 2 2 2 2 2 3 4 4"},
        [("5m", None), ("9m", [{}])],
    ),
    "BitrixsyncWorkerPaused": (
        {"bitrixsync_workers_paused": "0 0 1 1 1 1 1 1 1 1"},
        [("4m", None), ("8m", [{}])],
    ),
    "BitrixsyncPortalRejects": (
        {
            'bitrixsync_bitrix_rejects_total{worker="w1"}': "0+1x10 10+30x20",
            'bitrixsync_bitrix_call_seconds_count{worker="w1"}': "0+60x30",
            'bitrixsync_bitrix_rejects_total{worker="w1",instance="web-2"}': "0+1x10 10+30x20",
            'bitrixsync_bitrix_call_seconds_count{worker="w1",instance="web-2"}': "0+60x30",
        },
        [("10m", None), ("28m", [{}])],
    ),
    "BitrixsyncRedisDown": ({"bitrixsync_redis_up": "1 1 0 0 0 0"}, [("1m", None), ("5m", [{}])]),
    "BitrixsyncOutboxBacklog": (
        {"bitrixsync_outbox_backlog": "0 3 0 2 0 5 5 5 5 5 5 5 5"},
        [("5m", None), ("12m", [{}])],
    ),
    "BitrixsyncReconciliationRequeued": (
        {
            'bitrixsync_operations_last_hour{outcome="processed",entity="deal",op="update"}': "40x10",
            'bitrixsync_operations_last_hour{outcome="reconciled",entity="deal",op="create"}': "_x5 3x5",
        },
        [("3m", None), ("7m", [{}])],
    ),
}


def rules() -> dict[str, dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def expected(rule: dict, labels: dict) -> dict:
    def fill(text: str) -> str:
        return re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels[m.group(1)], text)

    return {
        "exp_labels": {**rule.get("labels", {}), **labels},
        "exp_annotations": {name: fill(text) for name, text in rule.get("annotations", {}).items()},
    }


def test_every_rule_has_a_case_that_fires_and_one_that_does_not():
    assert set(CASES) == set(rules())
    for name, (_, evaluations) in CASES.items():
        assert any(alerts for _, alerts in evaluations), f"{name}: no evaluation where it fires"
        assert any(alerts is None for _, alerts in evaluations), f"{name}: no evaluation where it must not fire"


def test_rules_are_valid():
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("alert", sorted(CASES))
def test_rule(alert, tmp_path):
    rule = rules()[alert]
    series, evaluations = CASES[alert]
    test_file = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": name, "values": values} for name, values in series.items()],
                "alert_rule_test": [
                    {"eval_time": at, "alertname": alert, "exp_alerts": [expected(rule, lab) for lab in alerts or []]}
                    for at, alerts in evaluations
                ],
            }
        ],
    }
    path = tmp_path / "alerts_test.yml"
    path.write_text(yaml.safe_dump(test_file, sort_keys=False))

    result = subprocess.run([promtool(), "test", "rules", str(path)], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr
