"""``check_portal``'s problems as ``Problem`` values (``bitrix_doctor`` shows the text and, in its details,
the setting): each custom-field problem names ``BITRIX_DEAL_FIELDS``, its exact text with the allowed
types, list values matched by value or label, only the doctor (``local_values``) looks at list items;
a missing pipeline names the services mapped to it and the pipelines there are, and pauses the worker
only when deals go there; a stage map without a status or with a stage the pipeline lacks names both.
Against the sandbox over HTTP; answers the sandbox never gives (no pipelines, no stages, a pipeline
without a name or id) and the command as sent, against the portal stand-in (``tests/bitrix/conftest.py``).
"""

from __future__ import annotations

import json
from contextlib import closing

import pytest

from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.custom_fields import UserFieldCatalog
from crmbridge.bitrix.portal_check import Problem, check_portal
from tests.bitrix.conftest import batch_answer

SETUP = {
    "categories": {"3": "Manufacturing"},
    "stages": {"3": ["NEW", "WON"]},
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


def report(sandbox, **options):
    with closing(BitrixClient(sandbox.webhook_url)) as client:
        return check_portal(client, **options)


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

    assert report(sandbox).problems == []
    assert [p.warning for p in report(sandbox, local_values=True).problems] == [True]


def test_a_missing_pipeline_of_several_services_names_them_all(sandbox, settings):
    settings.BITRIX_DEAL_CATEGORY_MAP = {"cnc-turning": 9, "cnc-milling": 9}

    found = report(sandbox, local_values=False)

    assert found.problems == [
        Problem(
            "BITRIX_DEAL_CATEGORY_MAP",
            "BITRIX_DEAL_CATEGORY_MAP (cnc-milling, cnc-turning=9): pipeline 9 does not exist in the portal "
            "(it has: 0 General, 3 Manufacturing); create it (CRM > Deals > pipelines) or map to an existing id",
            pauses=True,
        )
    ]


def test_a_stage_map_for_a_pipeline_no_deal_goes_to_does_not_pause(sandbox, settings):
    settings.BITRIX_STAGE_MAPS = {7: "new=NEW"}

    assert report(sandbox).problems == [
        Problem(
            "BITRIX_STAGE_MAP_7",
            "BITRIX_STAGE_MAP_7: pipeline 7 does not exist in the portal (it has: 0 General, 3 Manufacturing); "
            "create it (CRM > Deals > pipelines) or map to an existing id",
        )
    ]


def test_a_stage_map_without_a_status_or_with_a_stage_the_pipeline_lacks_pauses(sandbox, settings):
    settings.BITRIX_DEAL_CATEGORY_MAP = {"cnc-milling": 3}
    settings.BITRIX_STAGE_MAPS = {3: "new=NEW,done=WON,cancelled=LOSE"}
    missing = [
        f"BITRIX_STAGE_MAP_3: no stage for order status {status!r} in pipeline 3; add {status}=<STAGE>"
        for status in ("confirmed", "in_production", "shipped")
    ]
    lacking = (
        "BITRIX_STAGE_MAP_3: order status 'cancelled' maps to C3:LOSE, which pipeline 3 (Manufacturing) "
        "does not have; use one of C3:NEW, C3:WON"
    )

    problems = report(sandbox).problems

    assert problems == [Problem("BITRIX_STAGE_MAP_3", text, pauses=True) for text in [*missing, lacking]]


def test_the_pages_of_fields_after_the_batchs_are_read_once_from_where_it_stopped(sandbox, settings):
    many = [{"FIELD_NAME": f"UF_CRM_F{i:03d}", "USER_TYPE_ID": "string"} for i in range(120)]
    sandbox.configure({"userfields": {"deal": many}})
    settings.BITRIX_DEAL_FIELDS = {"comment": "UF_CRM_F119"}
    with closing(BitrixClient(sandbox.webhook_url)) as client:
        catalog = UserFieldCatalog(client)
        assert check_portal(client, catalog=catalog).problems == []

    assert list(catalog.fields("deal")) == [f["FIELD_NAME"] for f in many]  # primed: no request
    assert sandbox.stats()["commands_by_method"]["crm.deal.userfield.list"] == 3  # the batch's page, then 2


# -- against the portal stand-in ----------------------------------------------------------------
def stand_in_report(portal):
    with closing(BitrixClient(portal.url, read_timeout=5)) as client:
        return check_portal(client)


def test_the_check_asks_for_the_deal_pipelines_and_names_none_when_there_are_none(portal):
    portal.body = batch_answer({"categories": [], "stages0": []})  # PHP's empty array

    problems = stand_in_report(portal).problems

    assert json.loads(portal.requests[0]["raw"])["cmd"]["categories"] == "crm.category.list?entityTypeId=2"
    assert problems == [
        Problem(
            "BITRIX_DEAL_CATEGORY_DEFAULT",
            "BITRIX_DEAL_CATEGORY_DEFAULT: pipeline 0 does not exist in the portal (it has: none); "
            "create it (CRM > Deals > pipelines) or map to an existing id",
            pauses=True,
        )
    ]


def test_the_check_is_one_batch_of_the_lists_as_the_portal_spells_them(portal, settings):
    """Found by mutation testing: the sandbox reads method and parameter names in any case; the wire shows them."""
    settings.BITRIX_DEAL_CATEGORY_MAP = {"welding": 3}
    settings.BITRIX_CONTACT_FIELDS = {"phone": "UF_CRM_PHONE"}
    portal.body = batch_answer({"categories": [], "stages0": [], "stages3": [], "fields_contact": []})

    stand_in_report(portal)

    assert json.loads(portal.requests[0]["raw"])["cmd"] == {
        "categories": "crm.category.list?entityTypeId=2",
        "stages0": "crm.status.list?filter[ENTITY_ID]=DEAL_STAGE",
        "stages3": "crm.status.list?filter[ENTITY_ID]=DEAL_STAGE_3",
        "fields_contact": "crm.contact.userfield.list",
    }


def test_a_pipeline_without_stages_offers_none(portal, settings):
    settings.BITRIX_STAGE_MAP = "new=NEW,confirmed=NEW,in_production=NEW,shipped=NEW,done=WON,cancelled=LOSE"
    portal.body = batch_answer({"categories": {"categories": [{"id": 0, "name": "General"}]}, "stages0": []})

    problems = stand_in_report(portal).problems

    assert [p.setting for p in problems] == ["BITRIX_STAGE_MAP"] * 6
    assert problems[0].text == (
        "BITRIX_STAGE_MAP: order status 'new' maps to NEW, which pipeline 0 (General) does not have; "
        "use one of (no stages)"
    )


def test_a_pipeline_without_a_name_is_listed_by_its_id_and_one_without_an_id_not_at_all(portal, settings):
    settings.BITRIX_DEAL_CATEGORY_MAP = {"welding": 9}
    categories = [{"id": 0, "name": "General"}, {"id": "3"}, {"name": "no id"}, "junk"]
    stages = [{"STATUS_ID": s} for s in ("NEW", "PREPARATION", "EXECUTING", "FINAL_INVOICE", "WON", "LOSE")]
    portal.body = batch_answer({"categories": {"categories": categories}, "stages0": stages, "stages9": []})

    found = stand_in_report(portal)

    assert found.categories == {0: "General", 3: ""}
    assert [p.text.split("; ")[0] for p in found.problems] == [
        "BITRIX_DEAL_CATEGORY_MAP (welding=9): pipeline 9 does not exist in the portal (it has: 0 General, 3 )"
    ]
