"""The mapping settings' parsers, called directly (found by mutation testing, docs/mutation.md).

``bitrixsync/settings.py`` calls them once, when Django starts: in mutmut's parent process,
before a mutant is chosen, so no test that reads ``settings`` sees a changed parser. These
tests call them with their inputs instead. (``tests/test_settings.py`` checks the same
variables end to end, in fresh interpreters; it is marked ``slow``, so the mutation run skips it.)
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from crmbridge.bitrix.portal_settings import field_map, id_map, pairs, stage_maps_from_environment


def refusal(call) -> str:
    with pytest.raises(ImproperlyConfigured) as caught:
        call()
    return str(caught.value)


def test_pairs_skip_empty_parts_and_split_at_the_first_equals_sign():
    assert pairs("X", " a = 1 ,, ,b=2,") == [("a", "1"), ("b", "2")]
    assert pairs("X", "note=a=b") == [("note", "a=b")]


@pytest.mark.parametrize("pair", ["a=", "=1", "a", " = "])
def test_a_pair_needs_a_key_an_equals_sign_and_a_value(pair):
    text = refusal(lambda: pairs("BITRIX_PRODUCT_MAP", f"b=2,{pair}"))

    assert text == f"BITRIX_PRODUCT_MAP must be key=value pairs separated by commas, got {pair.strip()!r}"


def test_an_id_map_takes_whole_numbers_from_its_minimum_on():
    assert id_map("BITRIX_DEAL_CATEGORY_MAP", "cnc-milling=3, welding=0", minimum=0) == {"cnc-milling": 3, "welding": 0}
    assert id_map("BITRIX_PRODUCT_MAP", "welding=1", minimum=1) == {"welding": 1}
    assert id_map("BITRIX_PRODUCT_MAP", "", minimum=1) == {}


@pytest.mark.parametrize(("raw", "shown"), [("welding=0", "welding=0"), ("welding=x1", "welding=x1")])
def test_an_id_map_refuses_a_number_below_its_minimum_or_not_a_number(raw, shown):
    text = refusal(lambda: id_map("BITRIX_PRODUCT_MAP", raw, minimum=1))

    assert text == f"BITRIX_PRODUCT_MAP must be service_id=<whole number >= 1> pairs, got {shown}"


def test_an_id_map_names_its_variable_when_a_pair_is_malformed():
    text = refusal(lambda: id_map("BITRIX_DEAL_CATEGORY_MAP", "welding", minimum=0))

    assert text.startswith("BITRIX_DEAL_CATEGORY_MAP must be key=value pairs")


def test_a_field_map_takes_attribute_to_userfield_pairs():
    raw = "material=UF_CRM_MATERIAL, service=UF_CRM_1700_SERVICE"

    assert field_map("BITRIX_DEAL_FIELDS", raw) == {"material": "UF_CRM_MATERIAL", "service": "UF_CRM_1700_SERVICE"}
    assert field_map("BITRIX_CONTACT_FIELDS", "") == {}


def test_a_field_map_names_its_variable_when_a_pair_is_malformed():
    text = refusal(lambda: field_map("BITRIX_DEAL_FIELDS", "material=UF_CRM_MATERIAL, comment"))

    assert text == "BITRIX_DEAL_FIELDS must be key=value pairs separated by commas, got 'comment'"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [("Material=UF_CRM_MATERIAL", "'Material'"), ("material=UF_MATERIAL", "'UF_MATERIAL'"),
     ("material=uf_crm_material", "'uf_crm_material'")],
)  # fmt: skip
def test_a_field_map_names_the_attribute_or_field_it_refuses(raw, shown):
    text = refusal(lambda: field_map("BITRIX_CONTACT_FIELDS", raw))

    assert text == (
        f"BITRIX_CONTACT_FIELDS must be attribute=UF_CRM_NAME pairs (e.g. material=UF_CRM_MATERIAL), got {shown}"
    )


def test_stage_maps_are_read_from_every_numbered_variable_in_pipeline_order():
    environment = {
        "BITRIX_STAGE_MAP_12": " new=C12:NEW , done=C12:WON ",
        "BITRIX_STAGE_MAP": "new=NEW",  # the default map: not a pipeline's
        "BITRIX_STAGE_MAP_3": "new=INTAKE",
        "BITRIX_STAGE_MAP_5": "  ",  # set but empty: pipeline 5 takes the default
        "BITRIX_STAGE_MAP_X": "new=NEW",
        "XBITRIX_STAGE_MAP_4": "new=NEW",
    }

    maps = stage_maps_from_environment(environment)

    assert maps == {3: "new=INTAKE", 12: "new=C12:NEW , done=C12:WON"}
    assert list(maps) == [3, 12]
    assert stage_maps_from_environment({}) == {}


def test_a_malformed_stage_map_names_its_own_variable():
    environment = {"BITRIX_STAGE_MAP_3": "new=INTAKE", "BITRIX_STAGE_MAP_7": "new=NEW,done"}

    text = refusal(lambda: stage_maps_from_environment(environment))

    assert text == "BITRIX_STAGE_MAP_7 must be status=STAGE pairs separated by commas"
