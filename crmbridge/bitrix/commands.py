"""Batch commands: PHP-style query strings, and ``$result[...]`` references.

A ``batch`` request carries each command as ``"<method>?<query string>"``,
which the portal decodes with PHP's ``parse_str``: nested parameters are
written ``fields[EMAIL][0][VALUE]=...``. After decoding, Bitrix rewrites every
``$result[key][FIELD]`` in a value with the result of an earlier command: a
value that is exactly a reference becomes that result (an ID, a record), a
reference inside a longer text is replaced by the result as text.

That rewrite also hits text a customer typed (a comment saying
``"$result[x]"``): ``rewritten_in_batch`` finds such values so that the client
can send those commands outside the batch. References the caller means are
built with ``result_ref``, which marks them as such.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, quote

# What Bitrix's batch treats as a reference: ``$`` + one of its result maps,
# then ``[...]`` segments before the next whitespace (case-insensitive).
REFERENCE = re.compile(r"\$(result|next|total|time|error)(\S*)", re.IGNORECASE)
_SEGMENT = re.compile(r"\[([^\]]+)\]")


class ResultRef(str):
    """A ``$result[key][...]`` reference built on purpose (a plain ``str`` elsewhere)."""

    __slots__ = ()


def result_ref(key: str, *path: str) -> ResultRef:
    """``$result[key]`` or ``$result[key][FIELD]...``: an earlier command's result."""
    return ResultRef("$result" + "".join(f"[{part}]" for part in (key, *path)))


def encode_command(method: str, params: dict) -> str:
    """``"crm.deal.add?fields[TITLE]=..."``: what ``batch`` expects in ``cmd``.

    Values are percent-encoded in full (``&``, ``=``, ``[``, ``%``, UTF-8);
    key brackets stay readable, as PHP's ``http_build_query`` output decodes
    either way. ``True``/``False`` become ``1``/``0`` and ``None`` an empty
    value (so "clear this field" means the same as ``null`` in a JSON call).
    """
    query = "&".join(f"{key}={quote(value, safe='')}" for key, value in flatten_params(params))
    return f"{method}?{query}" if query else method


def flatten_params(params: dict, prefix: str = "") -> Iterator[tuple[str, str]]:
    """``{"fields": {"EMAIL": [{"VALUE": "a"}]}}`` -> ``("fields[EMAIL][0][VALUE]", "a")``."""
    for name, value in params.items():
        key = f"{prefix}[{quote(str(name), safe='')}]" if prefix else quote(str(name), safe="")
        if isinstance(value, dict):
            yield from flatten_params(value, key)
        elif isinstance(value, list | tuple):
            yield from flatten_params(dict(enumerate(value)), key)
        else:
            yield key, _scalar(value)


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Decimal | int | float | str):
        return str(value)
    raise TypeError(f"cannot encode a {type(value).__name__} in a batch command")


def decode_command(command: str) -> tuple[str, dict]:
    """The inverse of ``encode_command``: ``(method, params)`` as ``parse_str`` sees them."""
    method, _, query = command.partition("?")
    return method.strip(), parse_php_query(query)


def parse_php_query(query: str) -> dict:
    """Decode a query string the way PHP's ``parse_str`` does (nested keys, ``[]`` appends)."""
    return php_params(parse_qsl(query, keep_blank_values=True))


def php_params(pairs: Iterable[tuple[str, str]]) -> dict:
    """Nest ``(key, value)`` pairs by their ``a[b][c]`` keys. Lists come out as dicts ``{"0": ...}``."""
    params: dict = {}
    for key, value in pairs:
        name, path = _split_key(key)
        if not name:
            continue
        container, step = params, name
        for segment in path:
            child = container.get(step)
            if not isinstance(child, dict):
                child = container[step] = {}
            container, step = child, segment if segment != "" else str(len(child))
        container[step] = value
    return params


def _split_key(key: str) -> tuple[str, list[str]]:
    """``"fields[EMAIL][0]"`` -> ``("fields", ["EMAIL", "0"])``; a malformed key is a plain name."""
    opening = key.find("[")
    if opening <= 0 or not key.endswith("]"):
        return key, []
    segments = key[opening + 1 : -1].split("][")
    if any("[" in s or "]" in s for s in segments):
        return key, []
    return key[:opening], segments


def rewritten_in_batch(params: Any) -> bool:
    """Would Bitrix's batch rewrite some plain text in ``params`` as a reference?"""
    if isinstance(params, ResultRef):
        return False
    if isinstance(params, str):
        return any(_SEGMENT.search(match[2]) for match in REFERENCE.finditer(params))
    if isinstance(params, dict):
        return any(rewritten_in_batch(v) for v in params.values())
    if isinstance(params, list | tuple):
        return any(rewritten_in_batch(v) for v in params)
    return False


def referenced_keys(params: Any) -> set[str]:
    """The command keys that the ``result_ref`` values in ``params`` point to."""
    if isinstance(params, ResultRef):
        match = _SEGMENT.search(params)
        return {match[1]} if match else set()
    if isinstance(params, dict):
        params = list(params.values())
    if isinstance(params, list | tuple):
        return set().union(*(referenced_keys(v) for v in params))
    return set()


def resolve_reference(text: str, results: dict[str, dict]) -> Any:
    """Rewrite the references in ``text`` as Bitrix does, from ``results`` (``{"result": {...}, ...}``).

    A value that is exactly one reference becomes the referenced value itself;
    references inside a longer text become text. Like Bitrix, a path that
    cannot be followed stops at the last step that exists.
    """
    matches = [m for m in REFERENCE.finditer(text) if _SEGMENT.search(m[2])]
    if not matches:
        return text
    for match in matches:
        value = _follow(results.get(match[1].lower(), {}), _SEGMENT.findall(match[2]))
        if match[0] == text:
            return value
        text = text.replace(match[0], _as_text(value))
    return text


def _follow(value: Any, path: list[str]) -> Any:
    for step in path:
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            break
    return value


def _as_text(value: Any) -> str:
    if isinstance(value, dict | list):
        return "Array"  # what PHP prints for an array in a string
    if isinstance(value, bool):
        return "1" if value else ""
    return "" if value is None else str(value)
