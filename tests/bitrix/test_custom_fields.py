"""Local attributes -> the portal's custom fields (``crmbridge.bitrix.custom_fields``).

Pinned, as pure functions with exact tables: the value each field type gets (``convert``:
dates, date-times, booleans, money, text, nothing), the kind of each model field type
(``value_kind``: what the doctor checks a field's type against), an attribute's value and
display name (``local_value``), the list item a value picks (``enumeration_item``).
Pinned against the sandbox over HTTP (``UserFieldCatalog.values``, exactly what goes into
``crm.deal.add``): an array for a multiple field, ``[]`` / ``""`` to clear one, money with
the order's currency, a list item by slug or display name, the warning for a value without
an item, one more read of the field list (no more) to find an item added on the portal.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.db import models
from django.test.utils import isolate_apps

from crmbridge.bitrix import custom_fields
from crmbridge.bitrix.custom_fields import UserFieldCatalog, convert, enumeration_item, local_value, value_kind
from orders.models import Order

MOMENT = datetime(2024, 12, 31, 23, 30, 5, tzinfo=UTC)
LEAP_DAY = date(2024, 2, 29)


# -- convert: a local value as a field of each type takes it -------------------------------------
@pytest.mark.parametrize(
    ("kind", "value", "sent"),
    [
        ("string", None, ""), ("date", None, ""), ("boolean", None, ""), (None, None, ""),
        ("date", LEAP_DAY, "2024-02-29"), ("date", MOMENT, "2024-12-31"),
        ("datetime", MOMENT, "2024-12-31T23:30:05+00:00"), ("datetime", LEAP_DAY, "2024-02-29"),
        ("string", MOMENT, "2024-12-31 23:30:05+00:00"), ("string", LEAP_DAY, "2024-02-29"),
        ("boolean", True, 1), ("boolean", False, 0), ("boolean", "yes", 1), ("boolean", "", 0),
        ("integer", True, 1), ("integer", False, 0), ("string", True, "True"),
        ("integer", 4, "4"), ("double", Decimal("1250.50"), "1250.50"), ("double", 0.25, "0.25"),
        ("string", "Steel", "Steel"), ("enumeration", "", ""), ("url", "https://x.example/", "https://x.example/"),
    ],
)  # fmt: skip
def test_a_value_is_converted_by_the_fields_type(kind, value, sent):
    assert convert(kind, value) == sent
    assert type(convert(kind, value)) is type(sent)


def test_a_money_field_gets_amount_and_the_records_currency():
    order = Order(amount=Decimal("1250.50"), currency="EUR")

    assert convert("money", Decimal("1250.50"), record=order) == "1250.50|EUR"
    assert convert("money", Decimal("7.00")) == "7.00"  # no record, no currency: the amount alone
    assert convert("double", Decimal("1250.50"), record=order) == "1250.50"  # only a money field takes it
    assert convert("money", 12, record=order) == "12"  # not an amount


# -- value_kind: the kind of each model field type ------------------------------------------------
with isolate_apps("orders"):

    class Sample(models.Model):  # noqa: DJ008 (only its fields are read)
        id = models.AutoField(primary_key=True)
        day = models.DateField()
        moment = models.DateTimeField()
        flag = models.BooleanField()
        price = models.DecimalField(max_digits=9, decimal_places=2)
        ratio = models.FloatField()
        count = models.IntegerField()
        small = models.PositiveSmallIntegerField()
        big = models.BigIntegerField()
        name = models.CharField(max_length=10)
        note = models.TextField()
        owner = models.ForeignKey("orders.Order", on_delete=models.CASCADE)

        class Meta:
            app_label = "orders"

    class BigSample(models.Model):  # noqa: DJ008
        id = models.BigAutoField(primary_key=True)

        class Meta:
            app_label = "orders"


@pytest.mark.parametrize(
    ("model", "attribute", "kind"),
    [
        (Sample, "day", "date"), (Sample, "moment", "date"), (Sample, "flag", "boolean"),
        (Sample, "price", "decimal"), (Sample, "ratio", "decimal"),
        (Sample, "count", "integer"), (Sample, "small", "integer"), (Sample, "big", "integer"),
        (Sample, "id", "integer"), (BigSample, "id", "integer"),
        (Sample, "name", "text"), (Sample, "note", "text"), (Sample, "service", "text"),
        (Sample, "owner", None), (Sample, "colour", None),
    ],
)  # fmt: skip
def test_each_model_field_type_has_its_kind(model, attribute, kind):
    assert value_kind(model, attribute) == kind


# -- local_value and enumeration_item --------------------------------------------------------------
@pytest.mark.parametrize(
    ("order", "attribute", "pair"),
    [
        (Order(service_id="welding"), "service", ("welding", "Welding")),
        (Order(service_id="plasma-cutting"), "service", ("plasma-cutting", "plasma-cutting")),  # no longer offered
        (Order(status="in_production"), "status", ("in_production", "In production")),
        (Order(material="Steel"), "material", ("Steel", "Steel")),
        (Order(quantity=4), "quantity", (4, "4")),
        (Order(bitrix_deal_id=None), "bitrix_deal_id", (None, "")),
    ],
)  # fmt: skip
def test_an_attribute_gives_its_value_and_display_name(order, attribute, pair):
    assert local_value(order, attribute) == pair


LIST_FIELD = {
    "LIST": ["not an item", {"ID": "1"}, {"ID": "2", "VALUE": "in_production"}, {"ID": "3", "VALUE": "Welding"}]
}


@pytest.mark.parametrize(
    ("local", "display", "item"),
    [
        ("in_production", "In production", "2"), ("IN_PRODUCTION", "x", "2"),  # by the value, ignoring case
        ("welding", "Welding", "3"), ("x", "WELDING", "3"),  # by the display name, ignoring case
        ("Steel", "Steel", None), ("None", "None", None),  # an item without a VALUE matches nothing
    ],
)  # fmt: skip
def test_a_list_item_is_the_one_whose_value_is_the_value_or_display_name(local, display, item):
    assert enumeration_item(LIST_FIELD, local, display) == item


def test_a_field_without_items_has_no_item():
    assert enumeration_item({"LIST": None}, "a", "a") is None
    assert enumeration_item({}, "a", "a") is None


# -- UserFieldCatalog against the sandbox ---------------------------------------------------------
SERVICE_ITEMS = [{"ID": "71", "VALUE": "cnc-milling"}, {"ID": "72", "VALUE": "welding"}]
DEAL_FIELDS = [
    {"FIELD_NAME": "UF_CRM_SERVICE", "USER_TYPE_ID": "enumeration", "LIST": SERVICE_ITEMS},
    {"FIELD_NAME": "UF_CRM_MATERIAL", "USER_TYPE_ID": "enumeration", "LIST": [{"ID": "81", "VALUE": "Steel"}]},
    {"FIELD_NAME": "UF_CRM_QTYS", "USER_TYPE_ID": "integer", "MULTIPLE": "Y"},
    {"FIELD_NAME": "UF_CRM_NOTES", "USER_TYPE_ID": "string", "MULTIPLE": "Y"},
    {"FIELD_NAME": "UF_CRM_COMMENT", "USER_TYPE_ID": "string"},
    {"FIELD_NAME": "UF_CRM_SUM", "USER_TYPE_ID": "money"},
]


@pytest.fixture
def sandbox_options() -> dict:
    return {"setup": {"userfields": {"deal": DEAL_FIELDS}}}


@pytest.fixture
def catalog(client) -> UserFieldCatalog:
    return UserFieldCatalog(client)


@pytest.fixture
def always_reread(monkeypatch):
    """The field list may be read again at once (it is read at most once a minute)."""
    monkeypatch.setattr(custom_fields, "REFRESH_SECONDS", 0.0)


def field_list_reads(sandbox) -> int:
    return sandbox.stats()["commands_by_method"].get("crm.deal.userfield.list", 0)


def test_a_multiple_field_gets_an_array_and_a_single_field_the_value(catalog, settings):
    settings.BITRIX_DEAL_FIELDS = {"quantity": "UF_CRM_QTYS", "comment": "UF_CRM_COMMENT"}

    values = catalog.values("deal", Order(quantity=4, comment="Rush"))

    assert values == {"UF_CRM_QTYS": ["4"], "UF_CRM_COMMENT": "Rush"}


def test_a_field_the_portal_lacks_is_left_out_and_the_others_are_sent(catalog, settings):
    settings.BITRIX_DEAL_FIELDS = {"material": "UF_CRM_GONE", "comment": "UF_CRM_COMMENT"}

    assert catalog.values("deal", Order(material="Steel", comment="Rush")) == {"UF_CRM_COMMENT": "Rush"}


def test_an_empty_value_clears_the_field(catalog, settings, caplog):
    """A multiple field gets ``[]``, a list field ``""`` (not looked up among its items, no warning)."""
    settings.BITRIX_DEAL_FIELDS = {"material": "UF_CRM_MATERIAL", "comment": "UF_CRM_NOTES"}

    values = catalog.values("deal", Order(material="", comment=""))

    assert values == {"UF_CRM_MATERIAL": "", "UF_CRM_NOTES": []}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_money_field_gets_the_orders_amount_and_currency(catalog, settings):
    settings.BITRIX_DEAL_FIELDS = {"amount": "UF_CRM_SUM"}

    assert catalog.values("deal", Order(amount=Decimal("99.90"), currency="USD")) == {"UF_CRM_SUM": "99.90|USD"}


@pytest.mark.parametrize(("service", "item"), [("cnc-milling", "71"), ("welding", "72")])
def test_a_list_field_gets_the_item_of_the_slug_or_display_name(catalog, settings, service, item):
    settings.BITRIX_DEAL_FIELDS = {"service": "UF_CRM_SERVICE"}

    assert catalog.values("deal", Order(service_id=service)) == {"UF_CRM_SERVICE": item}


def test_a_value_without_an_item_is_left_out_with_a_warning_and_one_read_a_minute(catalog, settings, sandbox, caplog):
    settings.BITRIX_DEAL_FIELDS = {"service": "UF_CRM_SERVICE"}

    with caplog.at_level(logging.WARNING, logger="crmbridge.bitrix.custom_fields"):
        first = catalog.values("deal", Order(service_id="3d-printing"))
        second = catalog.values("deal", Order(service_id="3d-printing"))

    assert first == second == {}
    assert [r.getMessage() for r in caplog.records] == [
        "BITRIX_DEAL_FIELDS: service '3D printing' has no item in list field UF_CRM_SERVICE; field left unset"
    ] * 2
    assert [r.levelno for r in caplog.records] == [logging.WARNING] * 2
    assert field_list_reads(sandbox) == 1


def test_an_item_added_on_the_portal_is_found_by_one_more_read(catalog, settings, sandbox, always_reread):
    settings.BITRIX_DEAL_FIELDS = {"service": "UF_CRM_SERVICE"}
    assert catalog.values("deal", Order(service_id="3d-printing")) == {}  # read the list, then again
    added = {**DEAL_FIELDS[0], "LIST": [*SERVICE_ITEMS, {"ID": "73", "VALUE": "3d-printing"}]}
    sandbox.configure({"userfields": {"deal": [added, *DEAL_FIELDS[1:]]}})

    assert catalog.values("deal", Order(service_id="3d-printing")) == {"UF_CRM_SERVICE": "73"}
    assert field_list_reads(sandbox) == 3


def test_a_list_field_deleted_from_the_portal_meanwhile_is_left_unset(catalog, settings, sandbox, always_reread):
    settings.BITRIX_DEAL_FIELDS = {"service": "UF_CRM_SERVICE"}
    catalog.fields("deal")
    sandbox.configure({"userfields": {"deal": DEAL_FIELDS[1:]}})

    assert catalog.values("deal", Order(service_id="3d-printing")) == {}
    assert field_list_reads(sandbox) == 2


def test_a_value_with_its_item_costs_no_second_read(catalog, settings, sandbox, always_reread):
    settings.BITRIX_DEAL_FIELDS = {"service": "UF_CRM_SERVICE"}

    assert catalog.values("deal", Order(service_id="welding")) == {"UF_CRM_SERVICE": "72"}
    assert field_list_reads(sandbox) == 1


def test_a_field_list_that_is_no_list_primes_no_fields(catalog, settings, sandbox):
    """``prime`` takes the start-up check's batch answer as it came: a ``null`` is no fields (and no request)."""
    settings.BITRIX_DEAL_FIELDS = {"comment": "UF_CRM_COMMENT"}
    catalog.prime("deal", None)

    assert catalog.values("deal", Order(comment="Rush")) == {}
    assert field_list_reads(sandbox) == 0
