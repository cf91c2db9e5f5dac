"""Issue 20, items 2-5: deals carry product rows, live in their pipeline, fill custom fields,
and the worker checks the mapping against the portal before it syncs.

Real worker, real Redis, the sandbox over HTTP, set up like a portal with two pipelines.
"""

from __future__ import annotations

import logging
import threading
from decimal import Decimal

import pytest

from crmbridge.bitrix.product_rows import unit_price
from crmbridge.publishing.publisher import queue_deal_update
from crmbridge.redis_io import streams
from crmbridge.worker.dead_letters import parse_dead_letter
from crmbridge.worker.runner import Worker
from devtools.sandbox.deal_depth import _outcome
from devtools.sandbox.portal_setup import DEFAULT_STAGES
from orders.models import Order
from tests.conftest import wait_for
from tests.worker.helpers import fast_config, run_worker_once

pytestmark = pytest.mark.django_db(transaction=True)

SETUP = {
    "categories": {"3": "Manufacturing", "5": "Repairs"},
    "stages": {"5": ["NEW", "EXECUTING", "WON", "LOSE"]},
    "userfields": {
        "deal": [
            {
                "FIELD_NAME": "UF_CRM_SERVICE",
                "USER_TYPE_ID": "enumeration",
                "LIST": [{"VALUE": "CNC milling"}, {"VALUE": "welding"}],
            },
            {"FIELD_NAME": "UF_CRM_MATERIAL", "USER_TYPE_ID": "string"},
            {"FIELD_NAME": "UF_CRM_QTY", "USER_TYPE_ID": "integer", "MULTIPLE": "Y"},
            {"FIELD_NAME": "UF_CRM_DAY", "USER_TYPE_ID": "date"},
        ],
        "contact": [{"FIELD_NAME": "UF_CRM_PHONE", "USER_TYPE_ID": "string"}],
    },
}


@pytest.fixture
def sandbox_options() -> dict:
    return {"setup": SETUP}


@pytest.fixture
def mapped(settings):
    settings.BITRIX_DEAL_CATEGORY_MAP = {"cnc-milling": 3, "welding": 5}
    settings.BITRIX_STAGE_MAPS = {
        5: "new=NEW,confirmed=NEW,in_production=EXECUTING,shipped=EXECUTING,done=WON,cancelled=LOSE"
    }
    return settings


def deal_of(sandbox, order: Order) -> dict:
    order.refresh_from_db()
    return next(d for d in sandbox.records("deal") if int(d["ID"]) == order.bitrix_deal_id)


def rows_of(sandbox, order: Order) -> list[dict]:
    from crmbridge.bitrix.client import BitrixClient

    client = BitrixClient(sandbox.webhook_url)
    try:
        return client.call("crm.deal.productrows.get", {"id": deal_of(sandbox, order)["ID"]})
    finally:
        client.close()


def commands(sandbox) -> dict:
    return sandbox.stats()["commands_by_method"]


# -- item 2: product rows -------------------------------------------------------------------
def test_a_new_deal_carries_its_order_as_one_product_row(sandbox, alice, settings):
    settings.BITRIX_PRODUCT_MAP = {"laser-cutting": 42}
    order = Order.objects.create(owner=alice, service_id="laser-cutting", quantity=3, amount=Decimal("100.00"))

    run_worker_once()

    [row] = rows_of(sandbox, order)
    assert (row["PRODUCT_NAME"], row["QUANTITY"], row["MEASURE_CODE"], row["PRODUCT_ID"]) == (
        "Laser cutting", 3.0, 796, 42
    )  # fmt: skip
    assert deal_of(sandbox, order)["OPPORTUNITY"] == "100.00"  # the portal's sum of the rows
    # The start-up check, the existing-customer lookup, then contact + deal + rows in one request.
    assert sandbox.stats()["by_method"].get("batch") == 3


@pytest.mark.parametrize(
    ("amount", "quantity"), [("100.00", 3), ("0.01", 7), ("999999.99", 13), ("10.00", 4), ("1.00", 123457)]
)
def test_unit_price_times_quantity_is_the_amount_to_the_cent(amount, quantity):
    price = Decimal(unit_price(Decimal(amount), quantity))
    assert (price * quantity).quantize(Decimal("0.01")) == Decimal(amount)
    assert price.as_tuple().exponent >= -12


def test_rows_are_replaced_on_change_and_not_sent_when_unchanged(sandbox, alice):
    order = Order.objects.create(owner=alice, service_id="welding", quantity=2, amount=Decimal("50.00"))
    run_worker_once()
    order.refresh_from_db()  # a stale instance's save() would write the worker's columns back
    order.quantity, order.amount = 5, Decimal("70.00")
    order.save()
    run_worker_once()

    [row] = rows_of(sandbox, order)  # replaced, not appended
    assert (row["QUANTITY"], deal_of(sandbox, order)["OPPORTUNITY"]) == (5.0, "70.00")
    assert commands(sandbox)["crm.deal.productrows.set"] == 2

    order.refresh_from_db()
    order.comment = "please hurry"
    order.save()
    run_worker_once()
    assert commands(sandbox)["crm.deal.productrows.set"] == 2  # rows unchanged: not sent
    assert commands(sandbox)["crm.deal.update"] == 2


def test_a_failed_rows_command_keeps_the_deal_and_sends_the_rows_again(sandbox, alice):
    order = Order.objects.create(owner=alice, service_id="welding", quantity=2, amount=Decimal("50.00"))
    run_worker_once()
    sandbox.set_faults(operation_limits={"crm.deal.productrows.set": 60})
    order.refresh_from_db()
    order.quantity = 4
    order.save()
    run_worker_once(max_retries=0)
    order.refresh_from_db()
    assert order.bitrix_deal_id and order.bitrix_rows_hash  # the old rows' fingerprint is kept
    old_hash = order.bitrix_rows_hash

    sandbox.set_faults(operation_limits={})
    queue_deal_update(order.pk)  # what the dead letter's requeue (or bitrix_resync) does
    run_worker_once()
    order.refresh_from_db()
    assert order.bitrix_rows_hash != old_hash
    assert rows_of(sandbox, order)[0]["QUANTITY"] == 4.0


# -- item 3: pipelines -----------------------------------------------------------------------
def test_deals_go_to_their_services_pipeline_with_its_stages(sandbox, alice, mapped):
    milling = Order.objects.create(owner=alice, service_id="cnc-milling", quantity=1, status="confirmed")
    welding = Order.objects.create(owner=alice, service_id="welding", quantity=1, status="shipped")
    other = Order.objects.create(owner=alice, service_id="3d-printing", quantity=1)

    run_worker_once()

    assert (deal_of(sandbox, milling)["CATEGORY_ID"], deal_of(sandbox, milling)["STAGE_ID"]) == ("3", "C3:PREPARATION")
    assert (deal_of(sandbox, welding)["CATEGORY_ID"], deal_of(sandbox, welding)["STAGE_ID"]) == ("5", "C5:EXECUTING")
    assert (deal_of(sandbox, other)["CATEGORY_ID"], deal_of(sandbox, other)["STAGE_ID"]) == ("0", "NEW")


def test_a_service_change_moves_the_deal_with_item_update(sandbox, alice, mapped):
    order = Order.objects.create(owner=alice, service_id="cnc-milling", quantity=1, status="in_production")
    run_worker_once()
    order.refresh_from_db()
    order.service_id = "welding"
    order.save()

    run_worker_once()

    deal = deal_of(sandbox, order)
    assert (deal["CATEGORY_ID"], deal["STAGE_ID"]) == ("5", "C5:EXECUTING")
    assert commands(sandbox)["crm.item.update"] == 1
    order.refresh_from_db()
    assert order.bitrix_category_id == 5


def test_default_category_setting(sandbox, alice, mapped):
    mapped.BITRIX_DEAL_CATEGORY_DEFAULT = 3
    order = Order.objects.create(owner=alice, service_id="3d-printing", quantity=1)
    run_worker_once()
    assert (deal_of(sandbox, order)["CATEGORY_ID"], deal_of(sandbox, order)["STAGE_ID"]) == ("3", "C3:NEW")


# -- item 4: custom fields ---------------------------------------------------------------------
def test_custom_fields_enumeration_by_display_name_multiple_and_date(sandbox, alice, settings):
    settings.BITRIX_DEAL_FIELDS = {
        "service": "UF_CRM_SERVICE",
        "material": "UF_CRM_MATERIAL",
        "quantity": "UF_CRM_QTY",
        "created_at": "UF_CRM_DAY",
    }
    settings.BITRIX_CONTACT_FIELDS = {"phone": "UF_CRM_PHONE"}
    alice.phone = "+79990001122"
    alice.save()
    milling = Order.objects.create(owner=alice, service_id="cnc-milling", quantity=4, material="Steel")
    welding = Order.objects.create(owner=alice, service_id="WELDING".lower(), quantity=1)
    printing = Order.objects.create(owner=alice, service_id="3d-printing", quantity=1)

    run_worker_once()

    items = {i["VALUE"]: i["ID"] for i in sandbox.portal.setup.userfields["deal"][0]["LIST"]}
    deal = deal_of(sandbox, milling)
    milling.refresh_from_db()
    assert deal["UF_CRM_SERVICE"] == items["CNC milling"]  # the display name, ignoring case
    assert (deal["UF_CRM_MATERIAL"], deal["UF_CRM_QTY"]) == ("Steel", ["4"])
    assert deal["UF_CRM_DAY"] == milling.created_at.date().isoformat()
    assert deal_of(sandbox, welding)["UF_CRM_SERVICE"] == items["welding"]  # the slug, ignoring case
    assert deal_of(sandbox, printing).get("UF_CRM_SERVICE") is None  # no such item: left unset
    contact = sandbox.records("contact")[0]
    assert contact["UF_CRM_PHONE"] == "+79990001122"


def test_custom_fields_past_the_first_page_of_the_portals_list(sandbox, alice, settings):
    """A mature portal has more than 50 custom fields: ``crm.deal.userfield.list`` pages by 50
    (facts, "Request parameters"). Fields on the second and third page are written, and
    neither the start-up check nor the doctor calls them missing."""
    from crmbridge.bitrix.client import BitrixClient
    from crmbridge.bitrix.portal_check import check_portal

    others = [{"FIELD_NAME": f"UF_CRM_OTHER{i:03d}", "USER_TYPE_ID": "string"} for i in range(60)]
    late = [
        {"FIELD_NAME": "UF_CRM_MATERIAL", "USER_TYPE_ID": "string"},
        *[{"FIELD_NAME": f"UF_CRM_MORE{i:03d}", "USER_TYPE_ID": "string"} for i in range(45)],
        {"FIELD_NAME": "UF_CRM_SERVICE", "USER_TYPE_ID": "enumeration", "LIST": [{"VALUE": "CNC milling"}]},
    ]  # UF_CRM_MATERIAL is field 61 (page 2), UF_CRM_SERVICE field 107 (page 3)
    sandbox.configure({"userfields": {"deal": others + late}})
    settings.BITRIX_DEAL_FIELDS = {"material": "UF_CRM_MATERIAL", "service": "UF_CRM_SERVICE"}
    order = Order.objects.create(owner=alice, service_id="cnc-milling", quantity=1, material="Brass")

    run_worker_once()

    deal = deal_of(sandbox, order)
    service = sandbox.portal.setup.userfields["deal"][-1]["LIST"][0]["ID"]
    assert (deal["UF_CRM_MATERIAL"], deal["UF_CRM_SERVICE"]) == ("Brass", str(service))
    client = BitrixClient(sandbox.webhook_url)
    try:
        report = check_portal(client, local_values=True)
    finally:
        client.close()
    assert not [p.text for p in report.problems if "does not exist" in p.text]


# -- item 5: checked before use -----------------------------------------------------------------
def test_a_missing_pipeline_pauses_the_worker_instead_of_dead_lettering(sandbox, alice, settings, redis_client):
    settings.BITRIX_DEAL_CATEGORY_MAP = {"cnc-milling": 9}
    Order.objects.create(owner=alice, service_id="cnc-milling", quantity=1)
    worker = Worker(fast_config(), once=True)

    assert worker.run() == 2  # paused: a configuration error
    assert "BITRIX_DEAL_CATEGORY_MAP" in worker.paused_reason and "pipeline 9" in worker.paused_reason
    assert redis_client.xlen(streams.dead_letter_stream()) == 0
    assert sandbox.stats()["deals"] == 0


def test_a_missing_stage_pauses_and_the_fixed_mapping_resumes(sandbox, alice, mapped, redis_client):
    mapped.BITRIX_STAGE_MAPS = {5: "new=NEW,confirmed=NEW,in_production=PACKING,shipped=NEW,done=WON,cancelled=LOSE"}
    Order.objects.create(owner=alice, service_id="welding", quantity=1)
    worker = Worker(fast_config(), once=True)
    assert worker.run() == 2
    assert "BITRIX_STAGE_MAP_5" in worker.paused_reason and "C5:PACKING" in worker.paused_reason

    sandbox.configure({"stages": {"5": ["NEW", "PACKING", "WON", "LOSE"]}})
    assert run_worker_once() == 0
    assert sandbox.stats()["deals"] == 1


def test_a_paused_worker_resumes_by_itself_once_the_pipeline_exists(sandbox, alice, settings):
    settings.BITRIX_DEAL_CATEGORY_MAP = {"cnc-milling": 9}
    order = Order.objects.create(owner=alice, service_id="cnc-milling", quantity=1)
    worker = Worker(fast_config(pause_probe_seconds=0.3))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: "pipeline 9" in worker.paused_reason, 10, "paused on the missing pipeline")
        sandbox.configure({"categories": {"9": "Created by the admin"}})
        wait_for(lambda: not worker.paused_reason, 10, "resumed by the probe")
        wait_for(lambda: Order.objects.get(pk=order.pk).bitrix_deal_id, 10, "the held order synced")
        assert deal_of(sandbox, order)["CATEGORY_ID"] == "9"
    finally:
        worker.shutdown = True
        thread.join(10)


def test_the_check_reports_each_problem_in_one_line(sandbox, mapped, db):
    from crmbridge.bitrix.client import BitrixClient
    from crmbridge.bitrix.portal_check import check_portal

    mapped.BITRIX_DEAL_CATEGORY_MAP = {"cnc-milling": 3, "welding": 5, "sheet-metal": 8}
    mapped.BITRIX_DEAL_FIELDS = {"service": "UF_CRM_SERVICE", "material": "UF_CRM_NOPE", "amount": "UF_CRM_DAY"}
    client = BitrixClient(sandbox.webhook_url)
    try:
        report = check_portal(client, local_values=True)
    finally:
        client.close()
    lines = [p.text for p in report.problems]
    assert all("\n" not in line for line in lines)
    assert any(line.startswith("BITRIX_DEAL_CATEGORY_MAP (sheet-metal=8): pipeline 8") for line in lines)
    assert any("UF_CRM_NOPE does not exist" in line for line in lines)
    assert any("UF_CRM_DAY is of type date, which cannot hold amount" in line for line in lines)
    missing = next(p for p in report.problems if "has no item" in p.text)
    assert missing.warning and "'Laser cutting'" in missing.text and "'CNC milling'" not in missing.text
    assert [p.setting for p in report.pausing] == ["BITRIX_DEAL_CATEGORY_MAP"]


def test_an_unreachable_portal_at_start_is_no_pause_and_the_check_runs_again(sandbox, alice, mapped):
    sandbox.set_faults(error_500_share=1.0)
    Order.objects.create(owner=alice, service_id="welding", quantity=1)
    worker = Worker(fast_config(max_retries=0), once=True)
    worker.run()
    assert not worker.paused_reason  # a 500 says nothing about the mapping: retries handle it
    sandbox.set_faults(error_500_share=0.0)
    mapped.BITRIX_DEAL_CATEGORY_MAP = {"welding": 9}
    Order.objects.create(owner=alice, service_id="welding", quantity=2)
    worker.once = True
    assert worker.run() == 2 and "pipeline 9" in worker.paused_reason


def test_batches_are_filled_to_fifty_commands(sandbox, django_user_model):
    """50 new customers with an order each, one chunk: 150 commands (contact, deal, rows) in 3 requests.

    Packing units of 3 in order gave 4: 49 + 50 + 49 and a fourth with the last 2."""
    for i in range(50):
        user = django_user_model.objects.create_user(username=f"f{i}", email=f"f{i}@example.com", password="x-Pass-1")
        Order.objects.create(owner=user, service_id="welding", quantity=1)

    run_worker_once(batch_size=100)

    stats = sandbox.stats()
    assert (stats["deals"], stats["contacts"]) == (50, 50)
    assert stats["commands_by_method"]["crm.deal.productrows.set"] == 50
    # The start-up check, the chunk's existing-customer lookup, then 3 x 50 commands.
    assert stats["by_method"]["batch"] == 5, stats["by_method"]


README_PORTAL = {
    "categories": {"3": "Manufacturing", "5": "Repairs"},
    "stages": {"3": ["NEW", "PREPARATION", "EXECUTING", "WON", "LOSE"]},
    "userfields": {
        "deal": [
            {
                "FIELD_NAME": "UF_CRM_SERVICE",
                "USER_TYPE_ID": "enumeration",
                "LIST": [{"VALUE": "CNC milling"}, {"VALUE": "CNC turning"}, {"VALUE": "Welding"}],
            },
            {"FIELD_NAME": "UF_CRM_MATERIAL", "USER_TYPE_ID": "string"},
        ]
    },
}


def test_the_readme_worked_example(sandbox, alice, settings):
    """README, "Mapping to your portal", "Worked example": the settings and outcomes as written there."""
    sandbox.configure({**README_PORTAL, "stages": {**README_PORTAL["stages"], "5": list(DEFAULT_STAGES)}})
    settings.BITRIX_DEAL_CATEGORY_MAP = {"cnc-milling": 3, "cnc-turning": 3, "welding": 5}
    settings.BITRIX_DEAL_CATEGORY_DEFAULT = 0
    settings.BITRIX_STAGE_MAPS = {
        3: "new=NEW,confirmed=PREPARATION,in_production=EXECUTING,shipped=EXECUTING,done=WON,cancelled=LOSE"
    }
    settings.BITRIX_PRODUCT_MAP = {"welding": 118}
    settings.BITRIX_DEAL_FIELDS = {"service": "UF_CRM_SERVICE", "material": "UF_CRM_MATERIAL"}
    milling = Order.objects.create(
        owner=alice, service_id="cnc-milling", quantity=3, amount=Decimal("100.00"), status="confirmed"
    )
    welding = Order.objects.create(owner=alice, service_id="welding", quantity=1, amount=Decimal("10.00"))
    run_worker_once()

    deal = deal_of(sandbox, milling)
    items = {i["VALUE"]: i["ID"] for i in sandbox.portal.setup.userfields["deal"][0]["LIST"]}
    assert (deal["CATEGORY_ID"], deal["STAGE_ID"], deal["OPPORTUNITY"]) == ("3", "C3:PREPARATION", "100.00")
    assert deal["UF_CRM_SERVICE"] == items["CNC milling"]
    [row] = rows_of(sandbox, milling)
    assert (row["PRODUCT_NAME"], row["QUANTITY"], row["PRICE"], row["MEASURE_CODE"]) == (
        "CNC milling",
        3.0,
        33.333,
        796,
    )
    assert deal_of(sandbox, welding)["STAGE_ID"] == "C5:NEW"
    assert rows_of(sandbox, welding)[0]["PRODUCT_ID"] == 118

    milling.refresh_from_db()
    milling.service_id = "welding"
    milling.save()
    run_worker_once()
    assert (deal_of(sandbox, milling)["CATEGORY_ID"], deal_of(sandbox, milling)["STAGE_ID"]) == ("5", "C5:PREPARATION")


def test_a_field_list_that_cannot_be_read_is_retried_not_a_mapping_error(sandbox, alice, settings, redis_client):
    settings.BITRIX_DEAL_FIELDS = {"material": "UF_CRM_MATERIAL"}
    sandbox.set_faults(operation_limits={"crm.deal.userfield.list": 60})
    order = Order.objects.create(owner=alice, service_id="welding", quantity=1, material="Steel")

    run_worker_once(max_retries=0)

    [(_, letter)] = redis_client.xrange(streams.dead_letter_stream())
    assert (letter["reason"], letter["error_code"]) == ("max_retries_exceeded", "OPERATION_TIME_LIMIT")
    sandbox.set_faults(operation_limits={})
    queue_deal_update(order.pk)
    run_worker_once()
    assert deal_of(sandbox, order)["UF_CRM_MATERIAL"] == "Steel"


def test_a_refused_rows_command_pauses_with_the_portals_own_error(sandbox, alice, caplog):
    """Found by mutation testing (``_extra_error``): the deal is saved, and the failure of its rows
    command is the portal's own error (a webhook without the scope pauses the worker), not a guess."""
    sandbox.set_faults(denied_methods=["crm.deal.productrows.set"])
    order = Order.objects.create(owner=alice, service_id="welding", quantity=1)

    with caplog.at_level(logging.ERROR, logger="crmbridge.worker"):
        run_worker_once()

    assert Order.objects.get(pk=order.pk).bitrix_deal_id
    refused = "insufficient_scope in crm.deal.productrows.set: The request requires higher privileges"
    assert any(m.startswith(f"[WORKER] Bitrix configuration error, pausing sync: {refused}") for m in caplog.messages)


def test_a_rows_command_answering_false_is_retried_and_the_rows_not_taken_as_set(
    sandbox, alice, redis_client, monkeypatch
):
    """Found by mutation testing (``_extra_error``): a false answer without an error is a failure too."""
    rows_set = sandbox.portal.methods["crm.deal.productrows.set"]

    def answers_false(params, caller):  # the portal applies the rows, then answers false
        rows_set(params, caller)
        return _outcome(False)

    monkeypatch.setitem(sandbox.portal.methods, "crm.deal.productrows.set", answers_false)
    order = Order.objects.create(owner=alice, service_id="welding", quantity=1)

    run_worker_once(max_retries=1)

    order.refresh_from_db()
    assert order.bitrix_deal_id and not order.bitrix_rows_hash  # saved; its rows not known to be set
    [letter] = [parse_dead_letter(i, f) for i, f in redis_client.xrange(streams.dead_letter_stream())]
    assert (letter["attempts"], letter["error_description"]) == (
        2,
        "BAD_RESULT: crm.deal.productrows.set answered False",
    )


def checked(worker: Worker) -> bool:
    """The mapping check before a chunk, on its own."""
    return worker._check_mapping(worker._sync_batch(check_mapping=False))


def test_a_stage_map_that_does_not_parse_pauses_as_not_configured(sandbox, mapped, db, caplog):
    """Found by mutation testing (``_check_mapping``): the pause names the error code the doctor and the
    spec use for a setting that cannot be read."""
    mapped.BITRIX_STAGE_MAPS = {5: "new"}
    worker = Worker(fast_config(), name="checker")

    with caplog.at_level(logging.ERROR, logger="crmbridge.worker"):
        assert checked(worker) is False

    assert worker.paused_reason.startswith("NOT_CONFIGURED: BITRIX_STAGE_MAP_5")
    assert f"[WORKER] Bitrix configuration error, pausing sync: {worker.paused_reason}" in caplog.messages


def test_a_portal_that_cannot_be_checked_is_no_verdict_and_says_so(sandbox, mapped, db, caplog):
    sandbox.set_faults(error_500_share=1.0)
    worker = Worker(fast_config(max_retries=0), name="checker")

    with caplog.at_level(logging.WARNING, logger="crmbridge.worker"):
        assert checked(worker) is True

    assert not worker.paused_reason
    [line] = [m for m in caplog.messages if "portal mapping" in m]
    assert line.startswith("[WORKER] Could not check the portal mapping (") and line.endswith("); will check again")


def test_a_mapping_problem_that_does_not_pause_is_a_warning_line(sandbox, mapped, db, caplog):
    """A missing custom field only leaves that field unset: a WARNING, no pause; a missing pipeline
    deals go to pauses (its line is the pause's ERROR line, not a warning)."""
    mapped.BITRIX_DEAL_FIELDS = {"material": "UF_CRM_NOPE"}
    worker = Worker(fast_config(), name="checker")
    with caplog.at_level(logging.WARNING, logger="crmbridge.worker"):
        assert checked(worker) is True
    [warning] = [m for m in caplog.messages if m.startswith("[WORKER] Portal mapping: ")]
    assert "UF_CRM_NOPE does not exist" in warning and not worker.paused_reason

    caplog.clear()
    mapped.BITRIX_DEAL_CATEGORY_MAP = {"welding": 8}
    worker = Worker(fast_config(), name="checker-2")
    with caplog.at_level(logging.WARNING, logger="crmbridge.worker"):
        assert checked(worker) is False
    assert [m for m in caplog.messages if m.startswith("[WORKER] Portal mapping: ")] == [warning]
    assert "pipeline 8" in worker.paused_reason
