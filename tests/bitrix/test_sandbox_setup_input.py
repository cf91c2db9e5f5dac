"""The sandbox's control endpoints refuse bad input with a 400 that says what is wrong, and change nothing.

Found in review: ``POST /_sandbox/setup`` answered 500 for a list where an
object belongs (``"categories": [...]``), a userfield that is not an object, a
``LIST`` that is a string or an object; it took a string of stages as one stage
per letter and a negative pipeline id; a 400 in the middle of a setup left its
first half applied; a deeply nested body was a 500 (``RecursionError``). Over
real HTTP, as a test or a script drives the sandbox.
"""

from __future__ import annotations

import pytest
import requests
from django.core.management import CommandError, call_command

from devtools.sandbox.portal_setup import SetupError

SETUP_PATH = "/_sandbox/setup"
FIELD = {"FIELD_NAME": "UF_CRM_MATERIAL", "USER_TYPE_ID": "enumeration", "LIST": [{"VALUE": "Steel"}]}


def post(sandbox, path: str, body) -> requests.Response:
    data = body if isinstance(body, bytes) else None
    return requests.post(f"{sandbox.base_url}{path}", data=data, json=None if data is not None else body, timeout=10)


def assert_400(response: requests.Response, *words: str) -> str:
    assert response.status_code == 400, (response.status_code, response.text[:300])
    body = response.json()
    assert body["error"] == "INVALID_REQUEST"
    description = body["error_description"]
    for word in words:
        assert word in description, description
    return description


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", ["not JSON"]),
        (b"\xff\xfe{}", ["UTF-8"]),
        (b"[" * 100_000 + b"]" * 100_000, ["nested"]),
        ([{"categories": {}}], ["JSON object"]),
    ],
    ids=["not-json", "not-utf8", "too-deep", "a-list"],
)
def test_a_body_that_is_not_a_json_object_is_a_400(sandbox, body, words):
    assert_400(post(sandbox, SETUP_PATH, body), *words)


def test_a_rest_call_with_a_body_nested_too_deeply_is_a_400_too(sandbox):
    nested = b'{"a": ' * 50_000 + b"1" + b"}" * 50_000

    response = requests.post(sandbox.webhook_url + "profile", data=nested, timeout=10,
                             headers={"Content-Type": "application/json"})  # fmt: skip

    assert_400(response, "RecursionError")


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        ({"categories": ["Wholesale"]}, ["categories", "object", "list"]),
        ({"categories": "Wholesale"}, ["categories", "object"]),
        ({"categories": {"wholesale": "Wholesale"}}, ["categories", "'wholesale'", "pipeline id"]),
        ({"categories": {"-3": "Negative"}}, ["categories", "'-3'", "pipeline id"]),
        ({"categories": {"3": {"name": "Wholesale"}}}, ["categories['3']", "string"]),
        ({"stages": ["NEW", "WON"]}, ["stages", "object"]),
        ({"stages": {"3": "NEW"}}, ["stages['3']", "list of strings"]),
        ({"stages": {"3": {"NEW": 1}}}, ["stages['3']", "list of strings"]),
        ({"stages": {"3": [["NEW"]]}}, ["stages['3']", "list of strings"]),
        ({"stages": {"3": ["NEW", ""]}}, ["stages['3']", "list of strings"]),
        ({"userfields": [FIELD]}, ["userfields", "object"]),
        ({"userfields": {"lead": [FIELD]}}, ["userfields", "'lead'", "deal", "contact"]),
        ({"userfields": {"deal": FIELD}}, ["userfields['deal']", "list"]),
        ({"userfields": {"deal": None}}, ["userfields['deal']", "list"]),
        ({"userfields": {"deal": ["UF_CRM_MATERIAL"]}}, ["userfields['deal'][0]", "object"]),
        ({"userfields": {"deal": [{"USER_TYPE_ID": "string"}]}}, ["userfields['deal'][0]", "FIELD_NAME", "missing"]),
        ({"userfields": {"deal": [{"FIELD_NAME": 5}]}}, ["userfields['deal'][0]", "FIELD_NAME", "UF_CRM_"]),
        ({"userfields": {"deal": [{"FIELD_NAME": "MATERIAL"}]}}, ["userfields['deal'][0]", "UF_CRM_"]),
        ({"userfields": {"deal": [{**FIELD, "USER_TYPE_ID": ["enumeration"]}]}}, ["USER_TYPE_ID", "string"]),
        ({"userfields": {"deal": [{**FIELD, "MULTIPLE": "yes"}]}}, ["MULTIPLE", '"Y" or "N"']),
        ({"userfields": {"deal": [{**FIELD, "LIST": "Steel"}]}}, ["userfields['deal'][0]", "LIST", "list"]),
        ({"userfields": {"deal": [{**FIELD, "LIST": {"VALUE": "Steel"}}]}}, ["LIST", "list"]),
        ({"userfields": {"deal": [{**FIELD, "LIST": ["Steel"]}]}}, ["LIST[0]", "object"]),
        ({"userfields": {"deal": [{**FIELD, "LIST": [{"VALUE": 5}]}]}}, ["LIST[0]", "VALUE", "string"]),
        ({"userfields": {"deal": [{**FIELD, "LIST": [{"VALUE": "Steel", "ID": "x1"}]}]}}, ["LIST[0].ID", "whole"]),
        ({"category": {"3": "Wholesale"}}, ["unknown", "'category'", "categories"]),
    ],
)
def test_a_setup_of_the_wrong_shape_is_a_400_naming_the_part(sandbox, setup, words):
    assert_400(post(sandbox, SETUP_PATH, setup), *words)
    assert requests.get(f"{sandbox.base_url}/_sandbox/stats", timeout=10).status_code == 200  # still serving


def test_a_refused_setup_changes_nothing(sandbox):
    """Before: categories were added, then the stages failed: a 400, and a half-applied setup."""
    before = requests.get(f"{sandbox.base_url}{SETUP_PATH}", timeout=10).json()

    response = post(sandbox, SETUP_PATH, {"categories": {"7": "Seven"}, "stages": {"7": "NEW"},
                                          "userfields": {"deal": [FIELD]}})  # fmt: skip

    assert_400(response, "stages['7']")
    assert requests.get(f"{sandbox.base_url}{SETUP_PATH}", timeout=10).json() == before


def test_a_good_setup_still_applies_and_int_ids_from_python_are_fine(sandbox):
    items = [{"VALUE": "Steel"}, {"ID": 77, "SORT": "5"}]  # an item without VALUE: "" as before
    fields = {"deal": [{**FIELD, "MULTIPLE": "y", "LIST": items}]}
    answer = post(
        sandbox, SETUP_PATH, {"categories": {"7": "Seven"}, "stages": {"7": ["NEW", "WON"]}, "userfields": fields}
    )

    assert answer.status_code == 200, answer.text
    setup = answer.json()
    assert setup["categories"]["7"] == "Seven" and setup["stages"]["7"] == ["NEW", "WON"]
    (field,) = setup["userfields"]["deal"]
    assert field["MULTIPLE"] == "Y"
    assert [(item["ID"], item["VALUE"], item["SORT"]) for item in field["LIST"]][1] == ("77", "", "5")
    assert sandbox.configure({"categories": {9: "From Python"}})["categories"]["9"] == "From Python"
    for wrong in (-1, True):
        with pytest.raises(SetupError, match="pipeline id"):
            sandbox.configure({"categories": {wrong: "Not a pipeline"}})


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/_sandbox/limit", {"rate": "fast"}, ["rate", "number"]),
        ("/_sandbox/limit", {"rate": 2, "burst": "deep"}, ["burst", "whole number"]),
        ("/_sandbox/events", {"handler_url": 5}, ["handler_url", "http"]),
        ("/_sandbox/events", {"handler_url": "ftp://x"}, ["handler_url", "http"]),
        ("/_sandbox/events", {"application_token": 5}, ["application_token", "string"]),
        ("/_sandbox/events", {"echo_own_changes": "yes"}, ["echo_own_changes", "true or false"]),
    ],
)
def test_the_other_control_endpoints_refuse_wrong_types_too(sandbox, path, body, words):
    assert_400(post(sandbox, path, body), *words)


@pytest.mark.parametrize(
    ("text", "words"),
    [('{"stages": {"3": "NEW"}}', ["stages['3']", "list of strings"]), ("{not json", ["Expecting property name"])],
)
def test_bitrix_sandbox_names_a_wrong_setup_file_in_one_line(tmp_path, text, words):
    """``bitrix_sandbox --setup FILE``: a CommandError before the sandbox starts, not a traceback."""
    path = tmp_path / "setup.json"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(CommandError) as refused:
        call_command("bitrix_sandbox", "--setup", str(path), "--port", "0")

    assert str(refused.value).startswith(f"--setup {path}: ")
    assert all(word in str(refused.value) for word in words), refused.value
