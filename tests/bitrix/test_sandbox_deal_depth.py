"""The sandbox's deal depth: product rows, pipelines, stages, custom fields (issue 20 item 6).

Every behaviour here is the portal's as ``/work/shared/docs/bitrix24-rest-facts.md``
(section "CRM depth") describes it; each test names the fact it pins.
"""

from __future__ import annotations

import pytest
import requests

from crmbridge.bitrix.errors import BitrixError

SETUP = {
    "categories": {"3": "Wholesale"},
    "userfields": {
        "deal": [
            {
                "FIELD_NAME": "UF_CRM_MATERIAL",
                "USER_TYPE_ID": "enumeration",
                "LIST": [{"VALUE": "Steel"}, {"VALUE": "Aluminium"}],
            },
            {"FIELD_NAME": "UF_CRM_TAGS", "USER_TYPE_ID": "string", "MULTIPLE": "Y"},
        ],
        "contact": [{"FIELD_NAME": "UF_CRM_PHONE_NOTE", "USER_TYPE_ID": "string"}],
    },
}


@pytest.fixture
def sandbox_options(webhook_code) -> dict:
    return {"code": webhook_code, "setup": SETUP}


def _deal(client, **fields) -> int:
    return client.add("deal", {"TITLE": "t", "OPPORTUNITY": "1", **fields})


def test_productrows_set_replaces_rows_and_recalculates_opportunity(client):
    """Facts, "Product rows": ``set`` replaces all rows (rows not sent are removed), answers ``true``,
    and with IS_MANUAL_OPPORTUNITY N the portal recalculates OPPORTUNITY from the rows."""
    deal_id = _deal(client)
    rows = [{"PRODUCT_NAME": "A", "PRICE": "10.5", "QUANTITY": 2}, {"PRODUCT_NAME": "B", "PRICE": 1}]
    assert client.call("crm.deal.productrows.set", {"id": deal_id, "rows": rows}) is True
    assert client.get("deal", deal_id)["OPPORTUNITY"] == "22.00"

    client.call("crm.deal.productrows.set", {"id": deal_id, "rows": [{"PRODUCT_NAME": "C", "PRICE": 3, "QUANTITY": 3}]})

    got = client.call("crm.deal.productrows.get", {"id": deal_id})
    assert [(r["PRODUCT_NAME"], r["QUANTITY"], r["OWNER_TYPE"]) for r in got] == [("C", 3.0, "D")]
    assert all(r["ID"] and r["MEASURE_CODE"] == 796 for r in got)
    assert client.get("deal", deal_id)["OPPORTUNITY"] == "9.00"


def test_manual_opportunity_is_kept(client):
    """Facts, "Product rows": the recalculation happens only when IS_MANUAL_OPPORTUNITY is N."""
    deal_id = _deal(client, OPPORTUNITY="500", IS_MANUAL_OPPORTUNITY="Y")
    client.call("crm.deal.productrows.set", {"id": deal_id, "rows": [{"PRODUCT_NAME": "A", "PRICE": 1}]})
    assert client.get("deal", deal_id)["OPPORTUNITY"] == "500.00"


def test_rows_set_in_the_same_batch_as_the_add(client):
    """Facts, "Product rows": a new deal's rows can be set in the same batch (``id=$result[key]``)."""
    from crmbridge.bitrix.commands import result_ref

    result = client.batch(
        {
            "d1": ("crm.deal.add", {"fields": {"TITLE": "x"}}),
            "r1": ("crm.deal.productrows.set", {"id": result_ref("d1"), "rows": [{"PRODUCT_NAME": "A", "PRICE": 7}]}),
        }
    )
    assert result.errors == {}
    rows = client.call("crm.deal.productrows.get", {"id": result.results["d1"]})
    assert [r["PRICE"] for r in rows] == [7.0]


def test_category_id_is_immutable_in_deal_update(client):
    """Facts, "Pipelines": CATEGORY_ID is immutable in crm.deal.update (crm.deal.fields marks it isImmutable)."""
    deal_id = _deal(client, CATEGORY_ID=3, STAGE_ID="C3:NEW")
    client.update("deal", deal_id, {"CATEGORY_ID": 0, "TITLE": "renamed"})
    deal = client.get("deal", deal_id)
    assert (deal["CATEGORY_ID"], deal["TITLE"]) == ("3", "renamed")
    assert client.call("crm.deal.fields")["CATEGORY_ID"]["isImmutable"] is True


def test_item_update_moves_a_deal_to_another_pipeline(client):
    """Facts, "Pipelines": crm.item.update {entityTypeId: 2, id, fields: {categoryId, stageId}} moves a deal."""
    deal_id = _deal(client)
    answer = client.call(
        "crm.item.update", {"entityTypeId": 2, "id": deal_id, "fields": {"categoryId": 3, "stageId": "C3:EXECUTING"}}
    )
    assert answer["item"]["categoryId"] == 3
    deal = client.get("deal", deal_id)
    assert (deal["CATEGORY_ID"], deal["STAGE_ID"]) == ("3", "C3:EXECUTING")

    with pytest.raises(BitrixError):  # a stage of another pipeline
        client.call(
            "crm.item.update", {"entityTypeId": 2, "id": deal_id, "fields": {"categoryId": 0, "stageId": "C3:NEW"}}
        )
    with pytest.raises(BitrixError):  # no such pipeline
        client.call("crm.item.update", {"entityTypeId": 2, "id": deal_id, "fields": {"categoryId": 9}})


def test_category_list_and_status_list(client):
    """Facts, "Pipelines": crm.category.list -> result.categories[] (id, name, isDefault; default id 0);
    crm.status.list with filter[ENTITY_ID] DEAL_STAGE / DEAL_STAGE_<N> lists stages, C<N>: for pipeline N."""
    categories = client.call("crm.category.list", {"entityTypeId": 2})["categories"]
    assert [(c["id"], c["isDefault"]) for c in categories] == [(0, "Y"), (3, "N")]
    default = client.call("crm.status.list", {"filter": {"ENTITY_ID": "DEAL_STAGE"}})
    assert "NEW" in [s["STATUS_ID"] for s in default]
    third = client.call("crm.status.list", {"filter": {"ENTITY_ID": "DEAL_STAGE_3"}})
    assert {s["STATUS_ID"] for s in third} >= {"C3:NEW", "C3:WON"}
    assert client.call("crm.status.list", {"filter": {"ENTITY_ID": "DEAL_STAGE_7"}}) == []


def test_userfield_lists_and_values(client):
    """Facts, "Custom fields": the userfield lists describe FIELD_NAME, USER_TYPE_ID, MULTIPLE, LIST {ID, VALUE};
    values are written under the field's name, an enumeration takes the item's ID, a multiple field an array."""
    fields = {f["FIELD_NAME"]: f for f in client.call("crm.deal.userfield.list")}
    material = fields["UF_CRM_MATERIAL"]
    assert (material["USER_TYPE_ID"], material["MULTIPLE"]) == ("enumeration", "N")
    steel = next(item["ID"] for item in material["LIST"] if item["VALUE"] == "Steel")
    contact_fields = client.call("crm.contact.userfield.list")
    assert [f["FIELD_NAME"] for f in contact_fields] == ["UF_CRM_PHONE_NOTE"]

    result = client.batch(
        {"d": ("crm.deal.add", {"fields": {"UF_CRM_MATERIAL": steel, "UF_CRM_TAGS": ["a", "b"], "UF_CRM_NOPE": "x"}})}
    )
    deal = client.get("deal", result.results["d"])
    assert (deal["UF_CRM_MATERIAL"], deal["UF_CRM_TAGS"]) == (str(steel), ["a", "b"])
    assert "UF_CRM_NOPE" not in deal  # like any unknown field: ignored
    contact_id = client.add("contact", {"NAME": "n", "UF_CRM_PHONE_NOTE": "evenings"})
    assert client.get("contact", contact_id)["UF_CRM_PHONE_NOTE"] == "evenings"


def test_userfield_lists_page_by_fifty_and_list_all_reads_every_page(sandbox, client):
    """Facts, "Answers" and "Request parameters": ``*.list`` pages of 50 (``start``), ``total``, and ``next``
    only when more items exist; ``BitrixClient.list_all`` follows ``next`` to the last page."""
    many = [{"FIELD_NAME": f"UF_CRM_F{i:03d}", "USER_TYPE_ID": "string"} for i in range(120)]
    sandbox.configure({"userfields": {"deal": many}})
    url = sandbox.webhook_url + "crm.deal.userfield.list"

    first = requests.post(url, json={}).json()
    last = requests.post(url, json={"start": 100}).json()

    assert (len(first["result"]), first["total"], first["next"]) == (50, 120, 50)
    assert (len(last["result"]), last["total"], "next" in last) == (20, 120, False)
    assert [f["FIELD_NAME"] for f in client.list_all("crm.deal.userfield.list")] == [f["FIELD_NAME"] for f in many]
    in_batch = client.batch({"f": ("crm.deal.userfield.list", {})})
    assert in_batch.next == {"f": 50} and len(in_batch.results["f"]) == 50


def test_the_field_catalogue_reads_every_page_and_again_on_a_missing_item(sandbox, client):
    """``UserFieldCatalog``: all pages of the list; a list value without an item reads them again."""
    from crmbridge.bitrix.custom_fields import UserFieldCatalog

    many = [{"FIELD_NAME": f"UF_CRM_F{i:03d}", "USER_TYPE_ID": "string"} for i in range(70)]
    sandbox.configure({"userfields": {"deal": many}})
    catalog = UserFieldCatalog(client)

    assert len(catalog.fields("deal")) == 70 and "UF_CRM_F069" in catalog.fields("deal")
    sandbox.configure({"userfields": {"deal": [*many, {"FIELD_NAME": "UF_CRM_NEW", "USER_TYPE_ID": "string"}]}})
    assert "UF_CRM_NEW" not in catalog.fields("deal")  # cached
    catalog._read_at["deal"] -= 3600  # the minute between re-reads has passed
    assert catalog.refresh("deal") and "UF_CRM_NEW" in catalog.fields("deal")


def test_setup_through_the_control_endpoint(sandbox, client):
    """The sandbox's pipelines and fields can be changed at run time (``POST /_sandbox/setup``)."""
    url = f"{sandbox.base_url}/_sandbox/setup"
    answer = requests.post(url, json={"categories": {"5": "Repairs"}, "stages": {"5": ["NEW", "WON"]}}).json()
    assert answer["categories"] == {"0": "General", "3": "Wholesale", "5": "Repairs"}
    stages = client.call("crm.status.list", {"filter": {"ENTITY_ID": "DEAL_STAGE_5"}})
    assert [s["STATUS_ID"] for s in stages] == ["C5:NEW", "C5:WON"]
    assert requests.get(url).json()["stages"]["5"] == ["NEW", "WON"]


def test_command_counts_by_method(sandbox, client):
    """The bench counts commands: every command, in a batch or not, is counted by method."""
    client.batch({"a": ("crm.deal.add", {"fields": {}}), "b": ("crm.category.list", {"entityTypeId": 2})})
    commands = sandbox.stats()["commands_by_method"]
    assert (commands["crm.deal.add"], commands["crm.category.list"]) == (1, 1)


class StandInClock:
    """``time`` for ``custom_fields``: a monotonic clock that moves only when told."""

    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


def test_the_field_catalogue_reads_again_at_most_once_a_minute(sandbox, client, monkeypatch):
    """Found by mutation testing: a catalogue never read reads at once; after a read, not again before
    ``REFRESH_SECONDS`` have passed, and again from that moment on (a stand-in clock: no waiting)."""
    from crmbridge.bitrix import custom_fields

    clock = StandInClock(1000.0)
    monkeypatch.setattr(custom_fields, "time", clock)
    catalog = custom_fields.UserFieldCatalog(client)

    def reads() -> int:
        return sandbox.stats()["by_method"].get("crm.deal.userfield.list", 0)

    assert catalog.refresh("deal") is True and reads() == 1
    assert "UF_CRM_MATERIAL" in catalog.fields("deal")
    clock.now += 30.0
    assert catalog.refresh("deal") is False
    clock.now = 1000.0 + custom_fields.REFRESH_SECONDS - 0.001
    assert catalog.refresh("deal") is False and reads() == 1
    clock.now = 1000.0 + custom_fields.REFRESH_SECONDS
    assert catalog.refresh("deal") is True and reads() == 2
