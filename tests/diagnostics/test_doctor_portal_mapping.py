"""bitrix_doctor checks the mapping settings against the portal (issue 20 item 5): one line per problem."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from crmbridge.diagnostics.doctor import FAIL, OK, WARN, DoctorOptions, run_doctor
from crmbridge.redis_io.connection import get_redis
from orders.models import Order
from tests.diagnostics.helpers import beat, create_group

pytestmark = pytest.mark.django_db

SETUP = {
    "categories": {"3": "Manufacturing"},
    "stages": {"3": ["NEW", "PREPARATION", "EXECUTING", "WON", "LOSE"]},
    "userfields": {
        "deal": [{"FIELD_NAME": "UF_CRM_MATERIAL", "USER_TYPE_ID": "enumeration", "LIST": [{"VALUE": "Steel"}]}],
        "contact": [{"FIELD_NAME": "UF_CRM_SINCE", "USER_TYPE_ID": "date"}],
    },
}


@pytest.fixture
def sandbox_options() -> dict:
    return {"setup": SETUP}


@pytest.fixture
def healthy(redis_client, sandbox):
    create_group(redis_client)
    beat(redis_client)
    return redis_client


def mapping_findings() -> list:
    return [f for f in run_doctor(get_redis(), DoctorOptions()) if f.check == "bitrix.mapping"]


def test_a_matching_mapping_is_one_ok_line(healthy, settings):
    settings.BITRIX_DEAL_CATEGORY_MAP = {"cnc-milling": 3}
    settings.BITRIX_STAGE_MAPS = {3: "new=NEW,confirmed=PREPARATION,in_production=EXECUTING,shipped=EXECUTING,"
                                     "done=WON,cancelled=LOSE"}  # fmt: skip
    settings.BITRIX_DEAL_FIELDS = {"material": "UF_CRM_MATERIAL"}

    (finding,) = mapping_findings()

    assert finding.status == OK and "3 Manufacturing" in finding.summary


def test_each_problem_is_one_line_naming_the_setting_and_the_fix(healthy, settings, alice):
    settings.BITRIX_DEAL_CATEGORY_MAP = {"cnc-milling": 3, "welding": 4}  # 4 does not exist
    settings.BITRIX_DEAL_FIELDS = {"material": "UF_CRM_MATERIAL", "colour": "UF_CRM_COLOUR"}
    settings.BITRIX_CONTACT_FIELDS = {"first_name": "UF_CRM_SINCE"}
    Order.objects.create(owner=alice, service_id="welding", quantity=1, material="Titanium")

    findings = mapping_findings()
    summaries = [f.summary for f in findings]

    assert all("\n" not in s for s in summaries)
    pipeline = next(f for f in findings if f.summary.startswith("BITRIX_DEAL_CATEGORY_MAP (welding=4): pipeline 4"))
    assert pipeline.status == FAIL and "create it" in pipeline.summary and "pauses" in pipeline.cause
    stages = next(f for f in findings if "C3:FINAL_INVOICE" in f.summary)  # BITRIX_STAGE_MAP, prefixed
    assert stages.status == FAIL and stages.summary.startswith("BITRIX_STAGE_MAP:") and "use one of" in stages.summary
    assert any("'colour' is not a field" in s for s in summaries)
    assert any(s.startswith("BITRIX_CONTACT_FIELDS: UF_CRM_SINCE is of type date") for s in summaries)
    titanium = next(f for f in findings if "Titanium" in f.summary)
    assert titanium.status == WARN and "UF_CRM_MATERIAL" in titanium.summary


def test_the_command_prints_the_problem(healthy, settings):
    settings.BITRIX_DEAL_CATEGORY_DEFAULT = 7
    out = StringIO()
    with pytest.raises(SystemExit):
        call_command("bitrix_doctor", stdout=out)
    assert "[FAIL] bitrix.mapping" in out.getvalue()
    assert "BITRIX_DEAL_CATEGORY_DEFAULT: pipeline 7 does not exist" in out.getvalue()
