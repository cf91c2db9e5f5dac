"""Orders -> deal fields, users -> contact fields, stages <-> statuses; multifields through the sandbox."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured

from accounts.models import User
from crmbridge.bitrix import mapping
from crmbridge.bitrix.commands import result_ref
from orders.models import Order


def make_order(**overrides) -> Order:
    values = {
        "pk": 12,
        "owner_id": 5,
        "service_id": "cnc-milling",
        "quantity": 3,
        "material": "Aluminium 6061",
        "comment": "Deburr & anodize [black], 100% checked",
        "amount": Decimal("1500.00"),
        "currency": "EUR",
        "status": "confirmed",
    }
    return Order(**{**values, **overrides})


def make_user(**overrides) -> User:
    values = {"pk": 5, "first_name": "Анна", "last_name": "O'Neil 😀", "email": "anna@example.com", "phone": ""}
    return User(**{**values, **overrides})


def test_origin_ids_name_the_local_record():
    assert mapping.origin_id("deal", 12) == "order-12"
    assert mapping.origin_id("contact", 5) == "user-5"
    with pytest.raises(ValueError, match=r"^unknown entity 'lead'$"):
        mapping.origin_id("lead", 1)


def test_an_order_maps_to_deal_fields(settings):
    settings.BITRIX_ORIGINATOR_ID = "shop"

    fields = mapping.deal_fields(make_order(), contact_id=result_ref("c5"))

    assert fields == {
        "TITLE": "Order #12: CNC milling x 3",
        "OPPORTUNITY": "1500.00",
        "CURRENCY_ID": "EUR",
        "STAGE_ID": "PREPARATION",
        "COMMENTS": "Material: Aluminium 6061\n\nDeburr & anodize [black], 100% checked",
        "CONTACT_ID": "$result[c5]",
        "ORIGINATOR_ID": "shop",
        "ORIGIN_ID": "order-12",
    }


def test_deal_without_a_known_contact_leaves_it_alone():
    fields = mapping.deal_fields(make_order(material="", comment=""), contact_id=None)

    assert "CONTACT_ID" not in fields
    assert fields["COMMENTS"] == ""


def test_a_deals_stage_is_of_its_services_pipeline_or_the_one_named(settings):
    """Found by mutation testing: without ``category`` the service's pipeline gives the stage prefix;
    with it (the pipeline the deal is in, until the move) that pipeline does."""
    settings.BITRIX_DEAL_CATEGORY_MAP = {"cnc-milling": 3}

    assert mapping.deal_fields(make_order(), contact_id=None)["STAGE_ID"] == "C3:PREPARATION"
    assert mapping.deal_fields(make_order(), contact_id=None, category=0)["STAGE_ID"] == "PREPARATION"
    assert mapping.deal_fields(make_order(), contact_id=None, category=5)["STAGE_ID"] == "C5:PREPARATION"


def test_a_service_no_longer_in_the_catalogue_is_named_by_its_id():
    fields = mapping.deal_fields(make_order(service_id="plasma-cutting"), contact_id=None)

    assert fields["TITLE"] == "Order #12: plasma-cutting x 3"


def test_no_phone_and_no_entries_to_name_send_no_phone(settings):
    """Found by mutation testing: an empty list of existing entries names none; nothing to clear sends nothing."""
    fields = mapping.contact_fields(make_user(phone=""), existing={"EMAIL": [], "PHONE": []})

    assert fields == {
        "NAME": "Анна",
        "LAST_NAME": "O'Neil 😀",
        "EMAIL": [{"VALUE": "anna@example.com", "VALUE_TYPE": "WORK"}],
        "ORIGINATOR_ID": settings.BITRIX_ORIGINATOR_ID,
        "ORIGIN_ID": "user-5",
    }


def test_new_contact_fields(settings):
    fields = mapping.contact_fields(make_user(phone="+7 495 123-45-67"))

    assert fields == {
        "NAME": "Анна",
        "LAST_NAME": "O'Neil 😀",
        "EMAIL": [{"VALUE": "anna@example.com", "VALUE_TYPE": "WORK"}],
        "PHONE": [{"VALUE": "+7 495 123-45-67", "VALUE_TYPE": "WORK"}],
        "ORIGINATOR_ID": settings.BITRIX_ORIGINATOR_ID,
        "ORIGIN_ID": "user-5",
    }


def test_contact_update_names_the_existing_entries():
    existing = {
        "EMAIL": [{"ID": "31", "VALUE": "old@example.com", "VALUE_TYPE": "WORK"}],
        "PHONE": [{"ID": "32", "VALUE": "+1 555 0100", "VALUE_TYPE": "WORK"}],
    }

    fields = mapping.contact_fields(make_user(email="new@example.com", phone=""), existing=existing)

    assert fields["EMAIL"] == [{"VALUE": "new@example.com", "VALUE_TYPE": "WORK", "ID": "31"}]
    assert fields["PHONE"] == [{"ID": "32", "VALUE": "", "DELETE": "Y"}]


def test_no_phone_to_clear_sends_no_phone_and_entries_that_are_no_list_name_no_id():
    """No phone here and none there: no ``PHONE`` at all. Entries that are not a list name no ID."""
    existing = {"EMAIL": {"0": {"ID": "31", "VALUE": "old@example.com"}}, "PHONE": "+1 555 0100"}

    fields = mapping.contact_fields(make_user(email="new@example.com", phone=""), existing=existing)

    assert "PHONE" not in fields
    assert fields["EMAIL"] == [{"VALUE": "new@example.com", "VALUE_TYPE": "WORK"}]


def test_multifields_are_replaced_not_appended(client):
    """The whole path: add, change e-mail and phone, update with the contact's IDs, read back."""
    contact_id = client.add("contact", mapping.contact_fields(make_user(phone="+7 495 123-45-67")))
    user = make_user(email="changed@example.com", phone="+7 495 000-00-00")

    client.update("contact", contact_id, mapping.contact_fields(user, existing=client.get("contact", contact_id)))
    changed = client.get("contact", contact_id)
    client.update("contact", contact_id, mapping.contact_fields(make_user(phone=""), existing=changed))
    cleared = client.get("contact", contact_id)

    assert [e["VALUE"] for e in changed["EMAIL"]] == ["changed@example.com"]
    assert [p["VALUE"] for p in changed["PHONE"]] == ["+7 495 000-00-00"]
    assert [e["VALUE"] for e in cleared["EMAIL"]] == ["anna@example.com"]
    assert "PHONE" not in cleared and cleared["HAS_PHONE"] == "N"


def test_without_the_ids_bitrix_appends(client):
    """Why ``existing`` matters: the portal's own rule, reproduced by the sandbox."""
    contact_id = client.add("contact", mapping.contact_fields(make_user()))

    client.update("contact", contact_id, mapping.contact_fields(make_user(email="second@example.com")))

    emails = [e["VALUE"] for e in client.get("contact", contact_id)["EMAIL"]]
    assert emails == ["anna@example.com", "second@example.com"]


def test_stage_map_and_its_inverse(settings):
    assert mapping.stage_for_status("done") == "WON"
    assert mapping.status_for_stage("LOSE") == "cancelled"
    assert mapping.status_for_stage("C3:UNKNOWN") is None

    settings.BITRIX_STAGE_MAP = "new=NEW, confirmed=NEW ,done=WON"
    assert mapping.stage_for_status("confirmed") == "NEW"
    assert mapping.status_for_stage("NEW") == "new"  # several statuses on one stage: the first wins


def test_stage_map_errors_name_the_setting(settings):
    with pytest.raises(ImproperlyConfigured, match="BITRIX_STAGE_MAP"):
        mapping.stage_for_status("no_such_status")
    settings.BITRIX_STAGE_MAP = "new=NEW,confirmed"
    with pytest.raises(ImproperlyConfigured, match="BITRIX_STAGE_MAP"):
        mapping.stage_for_status("new")


def test_pipeline_stages_get_their_prefix_or_their_own_map(settings):
    """Issue 20 item 3: pipeline N uses C<N>: stage ids (facts document, "Pipelines")."""
    from crmbridge.bitrix import pipelines

    settings.BITRIX_STAGE_MAP = "new=NEW,done=WON"
    settings.BITRIX_DEAL_CATEGORY_MAP = {"welding": 5, "cnc-milling": 3}
    settings.BITRIX_STAGE_MAPS = {3: "new=C3:INTAKE,done=WON"}
    assert pipelines.category_for_service("welding") == 5
    assert pipelines.category_for_service("3d-printing") == 0
    assert pipelines.stage_for("new", 5) == "C5:NEW"
    assert pipelines.stage_for("new", 3) == "C3:INTAKE" and pipelines.stage_for("done", 3) == "C3:WON"
    assert pipelines.stage_for("new", 0) == "NEW"
    assert [pipelines.status_for_stage(s) for s in ("C5:WON", "C3:INTAKE", "NEW", "C7:NEW")] == [
        "done", "new", "new", None
    ]  # fmt: skip
    with pytest.raises(ImproperlyConfigured, match="BITRIX_STAGE_MAP_3 has no stage for order status 'shipped'"):
        pipelines.stage_for("shipped", 3)


@pytest.mark.parametrize(("category", "name"), [(3, "BITRIX_STAGE_MAP_3"), (5, "BITRIX_STAGE_MAP")])
def test_a_malformed_stage_map_names_the_variable_the_pipeline_reads(settings, category, name):
    from crmbridge.bitrix import pipelines

    settings.BITRIX_STAGE_MAP = "new=NEW,done"
    settings.BITRIX_STAGE_MAPS = {3: "new=INTAKE,done"}

    with pytest.raises(ImproperlyConfigured, match=f"^{name} must be status=STAGE pairs separated by commas$"):
        pipelines.stage_map(category)


def test_stages_of_the_default_pipeline_map_back_even_when_no_deal_goes_there_any_more(settings):
    """Found by mutation testing: pipeline 0 is always read back (deals made before the default pipeline
    changed stay there); a pipeline nothing maps to is not."""
    from crmbridge.bitrix import pipelines

    settings.BITRIX_STAGE_MAP = "new=NEW,done=WON"
    settings.BITRIX_DEAL_CATEGORY_DEFAULT = 3
    settings.BITRIX_DEAL_CATEGORY_MAP = {}
    settings.BITRIX_STAGE_MAPS = {}

    stages = ("WON", "C3:WON", "C1:WON", "C1:NEW")
    assert [pipelines.status_for_stage(s) for s in stages] == ["done", "done", None, None]
