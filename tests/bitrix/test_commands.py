"""Batch command encoding: PHP-style keys, exact round trips, ``$result`` references."""

from decimal import Decimal

import pytest

from crmbridge.bitrix.commands import (
    ResultRef,
    decode_command,
    encode_command,
    parse_php_query,
    referenced_keys,
    resolve_reference,
    result_ref,
    rewritten_in_batch,
)

TRICKY = "Иван & Co = [draft] 100% 😀 + a/b?c#d"


def test_nested_params_use_php_keys():
    command = encode_command("crm.contact.add", {"fields": {"NAME": "A", "EMAIL": [{"VALUE": "a@b.co"}]}})

    assert command == "crm.contact.add?fields[NAME]=A&fields[EMAIL][0][VALUE]=a%40b.co"


def test_values_round_trip_exactly():
    params = {"fields": {"TITLE": TRICKY, "COMMENTS": "line 1\nline 2\t%20"}, "id": 7}

    method, decoded = decode_command(encode_command("crm.deal.update", params))

    assert method == "crm.deal.update"
    assert decoded == {"fields": {"TITLE": TRICKY, "COMMENTS": "line 1\nline 2\t%20"}, "id": "7"}


def test_scalars_are_encoded_like_php():
    _, decoded = decode_command(
        encode_command("m", {"yes": True, "no": False, "none": None, "money": Decimal("10.50"), "n": 3})
    )

    assert decoded == {"yes": "1", "no": "0", "none": "", "money": "10.50", "n": "3"}


def test_unsupported_values_are_refused():
    with pytest.raises(TypeError):
        encode_command("m", {"when": object()})


def test_php_query_appends_and_nests():
    assert parse_php_query("select[]=ID&select[]=TITLE&filter[%3DORIGIN_ID]=order-1") == {
        "select": {"0": "ID", "1": "TITLE"},
        "filter": {"=ORIGIN_ID": "order-1"},
    }


def test_result_ref_is_a_marked_string():
    reference = result_ref("c12", "ID")

    assert reference == "$result[c12][ID]"
    assert isinstance(reference, ResultRef)
    assert result_ref("c12") == "$result[c12]"


@pytest.mark.parametrize(
    ("text", "rewritten"),
    [
        ("$result[c1]", True),
        ("price: $total[5] or so", True),
        ("$RESULT[x][ID]", True),
        ("costs $5, [note]", False),
        ("$result without brackets", False),
        ("USD$ [1]", False),
    ],
)
def test_rewritten_in_batch_finds_text_bitrix_would_rewrite(text, rewritten):
    assert rewritten_in_batch({"fields": {"COMMENTS": text}}) is rewritten


def test_intended_references_are_not_flagged():
    assert not rewritten_in_batch({"fields": {"CONTACT_ID": result_ref("c1")}})


def test_referenced_keys_are_found_in_nested_params():
    params = {"fields": {"CONTACT_ID": result_ref("c1"), "X": [result_ref("d2", "ID")], "Y": "$result[e3]"}}

    assert referenced_keys(params) == {"c1", "d2"}


def test_resolve_reference_like_bitrix():
    results = {"result": {"c": {"ID": "5", "NAME": "Ann"}, "d": 7}}

    assert resolve_reference("$result[d]", results) == 7
    assert resolve_reference("$result[c][ID]", results) == "5"
    assert resolve_reference("for $result[c][NAME] and $result[c]", results) == "for Ann and Array"
    assert resolve_reference("$result[missing][ID]", results) == {"c": {"ID": "5", "NAME": "Ann"}, "d": 7}


def test_a_value_a_command_cannot_carry_is_refused_by_its_type():
    with pytest.raises(TypeError, match=r"^cannot encode a bytes in a batch command$"):
        encode_command("crm.deal.add", {"fields": {"TITLE": b"raw"}})


def test_a_reference_to_a_batch_variable_without_entries_is_an_empty_array():
    """Found by mutation testing: ``$next`` / ``$total``... exist in Bitrix even when empty: an array."""
    results = {"result": {"c": {"ID": "5"}}}

    assert resolve_reference("$next[c]", results) == {}
    assert resolve_reference("page $total[c] of", results) == "page Array of"


@pytest.mark.parametrize(
    ("query", "params"),
    [("[0]=x&a=1", {"[0]": "x", "a": "1"}),  # no name before the bracket
     ("a[b=1", {"a[b": "1"}),  # no closing bracket: a plain name
     ("a]=1", {"a]": "1"}),
     ("a[b[c]=1", {"a[b[c]": "1"}),  # a bracket inside a segment: a plain name
     ("a[b]c]=1", {"a[b]c]": "1"}),
     ("x[y]=1", {"x": {"y": "1"}})],
)  # fmt: skip
def test_malformed_php_keys_are_plain_names(query, params):
    """Found by mutation testing: the edges of ``_split_key`` were not pinned."""
    assert parse_php_query(query) == params


def test_resolve_reference_follows_list_indexes_and_prints_scalars_like_php():
    """Found by mutation testing: list steps, the end of a list, booleans and null in a text."""
    results = {"result": {"l": [{"ID": 3}, "b"], "t": True, "f": False, "n": None, "i": 0}}

    assert resolve_reference("$result[l][0][ID]", results) == 3
    assert resolve_reference("$result[l][1]", results) == "b"
    assert resolve_reference("$result[l][2]", results) == [{"ID": 3}, "b"]  # past the end: stops there
    # A reference ends at white space, as in Bitrix.
    assert resolve_reference("a $result[t] $result[f] $result[n] $result[i] z", results) == "a 1   0 z"
