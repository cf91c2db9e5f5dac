"""Fixtures for the Bitrix client tests: a sandbox portal over real HTTP, a client, a limiter."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.rate_limit import RedisRateLimiter


@pytest.fixture
def webhook_code() -> str:
    """A code unique to the test, so that a search of the logs for it means something."""
    return f"sbx-{secrets.token_hex(8)}"


@pytest.fixture
def sandbox_options(webhook_code) -> dict:
    """The shared ``sandbox`` (``tests/conftest.py``) with this test's webhook code."""
    return {"code": webhook_code}


@pytest.fixture
def client(sandbox):
    bitrix = BitrixClient(sandbox.webhook_url, read_timeout=5)
    yield bitrix
    bitrix.close()


@pytest.fixture
def limiter(redis_client):
    return RedisRateLimiter(redis_client, rate=50, burst=10, key="test:ratelimit")


@pytest.fixture
def limited_client(sandbox, limiter):
    bitrix = BitrixClient(sandbox.webhook_url, limiter=limiter, read_timeout=5)
    yield bitrix
    bitrix.close()


# -- a portal stand-in over real HTTP (the client's transport and error tests) -----------------
SECRET = "transport-secret-code"


def batch_answer(results: dict) -> bytes:
    """The body of the portal's answer to ``batch``: each command's result, no errors."""
    maps = {"result": results, "result_error": [], "result_total": [], "result_next": [], "result_time": []}
    return json.dumps({"result": maps}).encode()


class Portal:
    """What the stand-in answers next, and every request it received."""

    def __init__(self) -> None:
        self.status: int | Callable[[], int] = 200
        self.body: bytes | Callable[[], bytes] = b'{"result": true}'
        self.content_type: str | None = "application/json"
        self.delay = 0.0
        self.redirect = False
        self.requests: list[dict] = []


@pytest.fixture
def portal():
    state = Portal()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.requests.append({"path": self.path, "headers": dict(self.headers), "raw": raw})
            self._answer()

        def do_GET(self) -> None:  # where a redirected POST ends up
            self._answer()

        def _answer(self) -> None:
            time.sleep(state.delay)
            if state.redirect:
                self.send_response(302)
                self.send_header("Location", self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = state.body() if callable(state.body) else state.body  # a callable: a new answer each time
            self.send_response(state.status() if callable(state.status) else state.status)
            if state.content_type is not None:
                self.send_header("Content-Type", state.content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/rest/7/{SECRET}/"
    yield state
    server.shutdown()
    server.server_close()
