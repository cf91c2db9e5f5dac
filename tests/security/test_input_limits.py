"""Items 2 and 3: odd charsets and oversized bodies get a JSON 4xx before any parsing, never a 500.

Both through the Django test client and through a real HTTP server (runserver's
WSGI handler), since a real request can lie about its length or be chunked.
"""

from __future__ import annotations

import http.client
import json

import pytest

from tests.inbound.conftest import TOKEN, event_form
from tests.wsgi_client import call_asgi, call_wsgi

JSON_PATHS = ["/auth/token", "/auth/register", "/orders", "/profile"]
ODD_CHARSETS = ["rot13", "zlib_codec", "bz2", "base64", "hex", "uu", "quopri", "utf-7", "utf-16", "no-such-charset"]


def assert_json_error(response, status: int) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["detail"]
    return body


@pytest.mark.django_db
@pytest.mark.parametrize("path", JSON_PATHS)
@pytest.mark.parametrize("charset", ODD_CHARSETS)
def test_an_odd_charset_is_415_json(alice_client, path, charset):
    body = json.dumps({"email": "a@example.com", "password": "x", "service_id": "welding", "quantity": 1})

    response = alice_client.post(path, data=body.encode(), content_type=f"application/json; charset={charset}")

    assert_json_error(response, 415)


@pytest.mark.django_db
@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", "utf8", "us-ascii"])
def test_utf8_and_ascii_charsets_are_fine(anon_client, charset):
    response = anon_client.post(
        "/auth/token", data=b'{"email": "x@example.com", "password": "nope"}',
        content_type=f"application/json; charset={charset}",
    )  # fmt: skip

    assert response.status_code == 400  # bad credentials: the body was read
    assert "non_field_errors" in response.json() or "detail" in response.json()


@pytest.mark.parametrize("charset", ["rot13", "utf-16", "windows-1251", "bz2"])
def test_the_webhook_refuses_a_non_utf8_charset(anon_client, settings, charset):
    settings.BITRIX_INBOUND_TOKEN = TOKEN
    from urllib.parse import urlencode

    response = anon_client.post(  # DRF's client: Django's cannot encode a body to rot13 itself
        "/bitrix/webhook",
        data=urlencode(event_form()).encode(),
        content_type=f"application/x-www-form-urlencoded; charset={charset}",
    )

    assert_json_error(response, 415)


# Issue 19 item 4: Django decodes with the *last* charset parameter and reads RFC 2231's charset*=;
# the guard read only the first plain one.
TRICK_CONTENT_TYPES = [
    "application/json; charset=utf-8; charset=rot13",
    "application/json; charset*=utf-8''bz2",
    "application/json; charset*=UTF-8''rot13",
    "application/json; charset=utf-8; charset*=utf-8''zlib_codec",
    "application/json; charset=utf-8; charset=utf-8",  # several charset parameters: refused, whatever they say
    "application/json; charset*0*=utf-8''rot; charset*1=13",  # RFC 2231 continuations
]
# Django's parser raises ValueError on these while building the request, before any middleware: the test
# client builds a plain WSGIRequest, so they are sent to the project's WSGI application itself.
UNPARSABLE_CONTENT_TYPES = [
    "application/json; charset*=no-such-codec''utf-8",  # ValueError
    "application/json; x*=bogus''v",
    "application/json; charset*0*=utf-8''utf; charset*=utf-8''v",  # TypeError in the standard library's email
]
JSON_METHODS = [("post", "/auth/token"), ("post", "/auth/register"), ("patch", "/profile"), ("post", "/orders")]


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), JSON_METHODS)
@pytest.mark.parametrize("content_type", TRICK_CONTENT_TYPES)
def test_charset_tricks_are_415_json(alice_client, method, path, content_type):
    alice_client.raise_request_exception = False
    body = b'{"email": "a@example.com", "password": "x", "service_id": "welding", "quantity": 1}'

    response = getattr(alice_client, method)(path, data=body, content_type=content_type)

    assert_json_error(response, 415)


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("content_type", TRICK_CONTENT_TYPES)
def test_charset_tricks_on_the_webhook_are_415(anon_client, settings, debug, content_type):
    from urllib.parse import urlencode

    settings.BITRIX_INBOUND_TOKEN = TOKEN
    settings.DEBUG = debug
    anon_client.raise_request_exception = False
    form_type = content_type.replace("application/json", "application/x-www-form-urlencoded")

    response = anon_client.post("/bitrix/webhook", data=urlencode(event_form()).encode(), content_type=form_type)

    assert_json_error(response, 415)


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/auth/token", "/auth/register", "/orders", "/bitrix/webhook", "/admin/login/"])
@pytest.mark.parametrize("content_type", UNPARSABLE_CONTENT_TYPES)
def test_an_unparsable_content_type_is_415_from_the_wsgi_application(path, content_type):
    from bitrixsync.wsgi import application

    status, headers, body = call_wsgi(application, path, content_type, b'{"email": "a@example.com"}')

    if path.startswith("/admin/"):
        assert status in (200, 403)  # the admin's own answer (CSRF): the request was built, no 500
    else:
        assert status == 415 and headers["Content-Type"].startswith("application/json"), body[:300]
        assert json.loads(body)["detail"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("content_type", UNPARSABLE_CONTENT_TYPES)
def test_an_unparsable_content_type_is_415_from_the_asgi_application(content_type):
    from bitrixsync.asgi import application

    status, body = call_asgi(application, "/auth/token", content_type, b'{"email": "a@example.com"}')

    assert status == 415, body[:300]
    assert json.loads(body)["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset*=utf-8''utf-8",
        'application/json; charset="utf-8"',
        "application/json; Charset=UTF-8",
    ],
)
def test_one_utf8_charset_in_any_spelling_is_fine(anon_client, content_type):
    response = anon_client.post(
        "/auth/token", data=b'{"email": "x@example.com", "password": "nope"}', content_type=content_type
    )

    assert response.status_code == 400  # bad credentials: the body was read


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/auth/token", "/auth/register", "/orders", "/bitrix/webhook"])
def test_a_body_over_the_limit_is_413_json(alice_client, settings, path):
    settings.API_MAX_BODY_BYTES = 1000
    body = json.dumps({"comment": "x" * 2000}).encode()

    response = alice_client.post(path, data=body, content_type="application/json")

    assert_json_error(response, 413)


@pytest.mark.django_db
def test_a_body_at_the_limit_is_parsed(alice_client, settings):
    body = json.dumps({"service_id": "welding", "quantity": 1, "comment": "x" * 100}).encode()
    settings.API_MAX_BODY_BYTES = len(body)

    assert alice_client.post("/orders", data=body, content_type="application/json").status_code == 201


def test_the_default_limit_is_about_a_megabyte(settings):
    assert 512 * 1024 <= settings.API_MAX_BODY_BYTES <= 2 * 1024 * 1024
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == settings.API_MAX_BODY_BYTES


# --- over real HTTP ---------------------------------------------------------------------


def raw_request(server, method: str, path: str, headers: dict, body: bytes = b"") -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection(server.hostname, server.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        if body:
            connection.send(body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_over_http_a_200_mb_claim_is_refused_without_reading_it(live_server):
    server = _address(live_server)
    headers = {"Content-Type": "application/json", "Content-Length": str(200 * 1024 * 1024)}

    status, _, body = raw_request(server, "POST", "/auth/token", headers, b'{"email": ')

    assert status == 413
    assert json.loads(body)["detail"]


@pytest.mark.django_db(transaction=True)
def test_over_http_odd_charset_and_chunked_bodies_are_4xx_json(live_server):
    server = _address(live_server)
    status, _, body = raw_request(
        server, "POST", "/auth/register",
        {"Content-Type": "application/json; charset=zlib_codec", "Content-Length": "2"}, b"{}",
    )  # fmt: skip
    assert status == 415 and json.loads(body)["detail"]

    chunk = b'{"email": "x@example.com", "password": "nope"}'
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk)
    status, _, body = raw_request(
        server, "POST", "/auth/token",
        {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}, chunked,
    )  # fmt: skip
    assert status == 411 and json.loads(body)["detail"]


def _address(live_server):
    from urllib.parse import urlsplit

    return urlsplit(live_server.url)
