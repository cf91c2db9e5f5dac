"""bitrix_doctor checks the mapping settings against the portal (issue 20 item 5): one line per problem."""

from __future__ import annotations

import re
from contextlib import closing
from io import StringIO

import pytest
from django.core.management import call_command

from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.errors import ErrorKind
from crmbridge.bitrix.portal_check import check_portal, pause_error
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


def list_field_warnings(sandbox) -> list[str]:
    """The texts of ``check_portal``'s warnings about list values without an item (what the doctor shows)."""
    with closing(BitrixClient(sandbox.webhook_url)) as client:
        report = check_portal(client, local_values=True)
    return [p.text for p in report.problems if p.warning]


@pytest.mark.parametrize(("count", "more"), [(10, ""), (11, " ...")])
def test_values_without_an_item_are_named_up_to_ten_then_three_dots(sandbox, settings, alice, count, more):
    """Found by mutation testing: the first ten values as stored (not as rows), ``, ``-separated, `` ...`` past ten."""
    settings.BITRIX_DEAL_FIELDS = {"material": "UF_CRM_MATERIAL"}
    for material in ["Steel", "", *(f"Alloy {n:02d}" for n in range(count))]:  # Steel has its item
        Order.objects.create(owner=alice, service_id="welding", quantity=1, material=material)

    (text,) = list_field_warnings(sandbox)

    shown = re.escape(", ".join(["'Alloy NN'"] * 10)).replace("NN", r"\d\d")
    pattern = f"BITRIX_DEAL_FIELDS: list field UF_CRM_MATERIAL has no item for material {shown}{re.escape(more)}; "
    assert re.fullmatch(pattern + re.escape("add the items (else it stays unset)"), text), text


def test_a_choice_is_matched_and_named_by_its_label(sandbox, settings):
    """Found by mutation testing: an item may carry a choice's label ("In production" for in_production)."""
    sandbox.configure({"userfields": {"deal": [{"FIELD_NAME": "UF_CRM_STATE", "USER_TYPE_ID": "enumeration",
                                                "LIST": [{"VALUE": "new"}, {"VALUE": "In production"},
                                                         {"VALUE": "DONE"}]}]}})  # fmt: skip
    settings.BITRIX_DEAL_FIELDS = {"status": "UF_CRM_STATE"}

    assert list_field_warnings(sandbox) == [
        "BITRIX_DEAL_FIELDS: list field UF_CRM_STATE has no item for status 'Confirmed', 'Shipped', 'Cancelled'; "
        "add the items (else it stays unset)"
    ]


def test_the_problems_that_pause_make_one_configuration_error(sandbox, settings):
    """The worker's pause (a fast test: under a broken ``pause_error`` the worker tests hang until timed out)."""
    settings.BITRIX_DEAL_CATEGORY_MAP = {"cnc-milling": 3, "welding": 9}  # 3 lacks FINAL_INVOICE, 9 is missing
    settings.BITRIX_DEAL_FIELDS = {"colour": "UF_CRM_COLOUR"}  # a problem that does not pause
    with closing(BitrixClient(sandbox.webhook_url)) as client:
        report = check_portal(client)
        settings.BITRIX_DEAL_CATEGORY_MAP = {}
        report_without_pipelines = check_portal(client)
    error = pause_error(report)

    assert len(report.pausing) == 2 and len(report.problems) == 3
    assert (error.code, error.kind) == ("PORTAL_MAPPING", ErrorKind.CONFIG)
    assert error.description == "; ".join(p.text for p in report.pausing)
    assert pause_error(report_without_pipelines) is None  # the colour alone does not pause
