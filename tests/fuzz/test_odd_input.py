"""Fuzzing what the schema does not describe: odd charsets and oversized bodies, on every operation.

For each operation of ``/api/schema`` with a body (POST, PUT, PATCH) plus the
inbound webhook, hypothesis picks a ``charset`` (Python codecs that are not text
encodings, real non-UTF-8 encodings, and random names) and a body, or a body
over ``API_MAX_BODY_BYTES`` (declared or real). Every answer must be a JSON
4xx with ``detail`` (charset: 415; too large: 413), never a 5xx, signed in or
not. Same knobs as ``test_api_schemathesis.py`` (``FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import json
import os
import string

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import User
from accounts.tokens import token_for

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0")) or 40
ODD_CHARSETS = ["rot13", "zlib_codec", "bz2_codec", "base64", "hex", "uu", "quopri", "punycode", "idna",
                "unicode_escape", "raw_unicode_escape", "utf-7", "utf-16", "utf-32", "cp1251", "latin-1",
                "koi8-r", "mbcs", "undefined", "x" * 200]  # fmt: skip
LIMIT = 4096

pytestmark = pytest.mark.django_db(transaction=True)


def body_operations() -> list[tuple[str, str]]:
    from drf_spectacular.generators import SchemaGenerator

    spec = SchemaGenerator().get_schema(request=None, public=True)  # what /api/schema serves
    found = [
        (method.upper(), path.replace("{id}", "1"))
        for path, item in spec["paths"].items()
        for method in item
        if method in ("post", "put", "patch")
    ]
    return [*found, ("POST", "/bitrix/webhook")]


OPERATIONS = body_operations()
charset_names = st.one_of(
    st.sampled_from(ODD_CHARSETS), st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=30)
)
json_bodies = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
).map(lambda value: json.dumps(value).encode())
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture
def token(db) -> str:
    return token_for(User.objects.create_user(username="fuzzer", email="fuzzer@example.com", password="x"))


def send(method: str, path: str, body: bytes, content_type: str, token: str, **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return Client().generic(method, path, data=body, content_type=content_type, **headers, **extra)


def assert_json_4xx(response, *expected: int) -> None:
    assert response.status_code < 500, response.content[:300]
    assert response.status_code in expected, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    assert json.loads(response.content)["detail"]


@FUZZ
@given(operation=st.sampled_from(OPERATIONS), charset=charset_names, body=json_bodies, signed_in=st.booleans())
def test_a_charset_other_than_utf8_is_a_json_415(token, operation, charset, body, signed_in):
    from bitrixsync.api_guard import charset_accepted

    method, path = operation
    response = send(method, path, body, f"application/json; charset={charset}", token if signed_in else "")

    if charset_accepted(charset):  # a random name may spell UTF-8 or ASCII: then the endpoint answers
        assert response.status_code < 500, response.content[:300]
    else:
        assert_json_4xx(response, 415)


@FUZZ
@given(operation=st.sampled_from(OPERATIONS), extra=st.integers(1, 10 * LIMIT), real=st.booleans())
def test_a_body_over_the_limit_is_a_json_413(token, operation, extra, real, settings_limit):
    method, path = operation
    size = LIMIT + extra
    body = b'{"comment": "' + b"x" * (size - 15) + b'"}' if real else b"{}"

    response = send(method, path, body, "application/json", token, CONTENT_LENGTH=str(size))

    assert_json_4xx(response, 413)


@pytest.fixture
def settings_limit(settings):
    settings.API_MAX_BODY_BYTES = LIMIT
