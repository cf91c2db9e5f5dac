"""Fuzzing what the schema does not describe: odd charsets, oversized bodies, forged forwarding headers.

For each operation of ``/api/schema`` with a body (POST, PUT, PATCH) plus the
inbound webhook, hypothesis picks a ``charset`` (Python codecs that are not text
encodings, real non-UTF-8 encodings, and random names) and a body, or a body
over ``API_MAX_BODY_BYTES`` (declared or real). Every answer must be a JSON
4xx with ``detail`` (charset: 415; too large: 413), never a 5xx, signed in or
not. Content-Types with *several* charset parameters, plain and RFC 2231
(``charset*=utf-8''rot13``, continuations, unknown encodings) go through the
project's own WSGI application: 415 unless exactly one says UTF-8/ASCII.
Forged ``X-Forwarded-For`` / ``Forwarded`` / ``X-Real-IP`` headers never buy a
fresh rate-limit budget. Same knobs as ``test_api_schemathesis.py`` (``FUZZ_EXAMPLES``).
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
from tests.wsgi_client import call_wsgi

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


# --- several charset parameters, plain and RFC 2231 (issue 19 item 4) -----------------------------

ENCODINGS = ["utf-8", "UTF-8", "us-ascii", "rot13", "bz2", "zlib_codec", "utf-16", "no-such-codec", ""]
charset_parameters = st.one_of(
    st.builds("charset={}".format, st.sampled_from(ENCODINGS[:-1]) | charset_names),
    st.builds('charset="{}"'.format, st.sampled_from(ENCODINGS[:-1])),
    st.builds(
        "charset*={}'{}'{}".format,
        st.sampled_from(ENCODINGS),
        st.sampled_from(["", "en"]),
        st.sampled_from(ENCODINGS[:-1]) | charset_names,
    ),
    st.builds(
        "charset*0*={}''{}; charset*1={}".format,
        st.sampled_from(ENCODINGS),
        st.sampled_from(["utf", "rot"]),
        st.sampled_from(["-8", "13"]),
    ),
    st.builds(
        "{}*={}''{}".format,
        st.sampled_from(["x", "name", "boundary"]),
        st.sampled_from(ENCODINGS),
        st.text(string.ascii_letters, max_size=5),
    ),
)


@FUZZ
@given(operation=st.sampled_from(OPERATIONS), parameters=st.lists(charset_parameters, min_size=1, max_size=4),
       body=json_bodies)  # fmt: skip
def test_several_or_encoded_charset_parameters_are_never_a_500(token, operation, parameters, body):
    from bitrixsync.api_guard import charset_parameter_count
    from bitrixsync.wsgi import application

    method, path = operation
    content_type = "; ".join(["application/json", *parameters])

    status, headers, content = call_wsgi(
        application, path, content_type, body, method=method, HTTP_AUTHORIZATION=f"Bearer {token}"
    )

    assert status < 500, (content_type, content[:300])
    if charset_parameter_count(content_type) > 1:
        assert status == 415, (content_type, status, content[:300])
    if status == 415:
        assert headers["Content-Type"].startswith("application/json") and json.loads(content)["detail"]


# --- forged forwarding headers (issue 19 item 1) ---------------------------------------------------

forwarding_values = st.one_of(
    st.ip_addresses().map(str),
    st.lists(st.ip_addresses().map(str), min_size=1, max_size=4).map(", ".join),
    st.text(max_size=40),
)
forwarding_headers = st.dictionaries(
    st.sampled_from(["HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP", "HTTP_X_CLIENT_IP"]),
    forwarding_values,
    min_size=1,
)


@FUZZ
@given(forged=st.lists(forwarding_headers, min_size=4, max_size=4))
def test_forged_forwarding_headers_never_buy_a_fresh_budget(forged, settings, redis_client):
    settings.THROTTLE_NUM_PROXIES = 0
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "login": "3/min"}
    redis_client.flushdb()  # one hypothesis example, one fresh window
    client = Client()

    codes = [
        client.post(
            "/auth/token",
            {"email": f"u{n}@example.com", "password": "x"},
            content_type="application/json",
            REMOTE_ADDR="192.0.2.44",
            **headers,
        ).status_code
        for n, headers in enumerate(forged)
    ]

    assert codes == [400, 400, 400, 429]


@FUZZ
@given(client_written=st.lists(forwarding_values, max_size=3), proxies=st.integers(1, 3), real=st.ip_addresses())
def test_behind_proxies_only_the_proxies_entries_count(settings, client_written, proxies, real):
    from django.test import RequestFactory

    from bitrixsync.client_address import client_address

    settings.THROTTLE_NUM_PROXIES = proxies
    appended = [str(real), *[f"172.16.0.{n}" for n in range(1, proxies)]]  # what our proxies wrote
    header = ", ".join([*client_written, *appended])

    address = client_address(RequestFactory().get("/", REMOTE_ADDR="172.16.0.99", HTTP_X_FORWARDED_FOR=header))

    assert address == str(real)
