"""``check_portal``'s problems as ``Problem`` values (``bitrix_doctor`` shows the text and, in its details,
the setting): each custom-field problem names ``BITRIX_DEAL_FIELDS``, its exact text with the allowed
types, list values matched by value or label, only the doctor (``local_values``) looks at list items,
and a missing pipeline shared by several services names them all. Against the sandbox over HTTP.
"""

from __future__ import annotations

from contextlib import closing

import pytest

from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.portal_check import Problem, check_portal

SETUP = {
    "userfields": {
        "deal": [
            {"FIELD_NAME": "UF_CRM_DAY", "USER_TYPE_ID": "date"},
            {"FIELD_NAME": "UF_CRM_NOTE", "USER_TYPE_ID": "string"},
            {"FIELD_NAME": "UF_CRM_STATE", "USER_TYPE_ID": "enumeration",
             "LIST": [{"VALUE": "New"}, {"VALUE": "in_production"}, {"VALUE": "done"}]},
        ]
    }
}  # fmt: skip
SETTING = "BITRIX_DEAL_FIELDS"


@pytest.fixture
def sandbox_options() -> dict:
    return {"setup": SETUP}


def report(sandbox, *, local_values: bool):
    with closing(BitrixClient(sandbox.webhook_url)) as client:
        return check_portal(client, local_values=local_values)


def test_each_field_problem_names_its_setting_and_the_fix(sandbox, settings):
    settings.BITRIX_DEAL_FIELDS = {
        "colour": "UF_CRM_COLOUR",
        "material": "UF_CRM_GONE",
        "quantity": "UF_CRM_DAY",
        "comment": "UF_CRM_NOTE",
        "status": "UF_CRM_STATE",
    }

    problems = report(sandbox, local_values=True).problems

    assert problems == [
        Problem(SETTING, f"{SETTING}: 'colour' is not a field of the local deal; use a model field or service"),
        Problem(SETTING, f"{SETTING}: UF_CRM_GONE does not exist on the portal's deals; create it "
                         "(CRM settings > custom fields) or remove material=UF_CRM_GONE"),
        Problem(SETTING, f"{SETTING}: UF_CRM_DAY is of type date, which cannot hold quantity (integer); "
                         "map it to a field of type double, enumeration, integer, string"),
        Problem(SETTING, f"{SETTING}: list field UF_CRM_STATE has no item for status 'Confirmed', 'Shipped', "
                         "'Cancelled'; add the items (else it stays unset)", warning=True),
    ]  # fmt: skip


def test_the_workers_check_does_not_look_at_list_items(sandbox, settings):
    """Without ``local_values`` (the worker's start-up check) list items are not compared with local values."""
    settings.BITRIX_DEAL_FIELDS = {"status": "UF_CRM_STATE", "comment": "UF_CRM_NOTE"}

    assert report(sandbox, local_values=False).problems == []
    assert [p.warning for p in report(sandbox, local_values=True).problems] == [True]


def test_a_missing_pipeline_of_several_services_names_them_all(sandbox, settings):
    settings.BITRIX_DEAL_CATEGORY_MAP = {"cnc-turning": 9, "cnc-milling": 9}

    found = report(sandbox, local_values=False)

    assert found.problems == [
        Problem(
            "BITRIX_DEAL_CATEGORY_MAP",
            f"BITRIX_DEAL_CATEGORY_MAP (cnc-milling, cnc-turning=9): pipeline 9 does not exist in the portal "
            f"(it has: 0 {found.categories[0]}); create it (CRM > Deals > pipelines) or map to an existing id",
            pauses=True,
        )
    ]
