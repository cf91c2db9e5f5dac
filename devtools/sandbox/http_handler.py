"""HTTP for the sandbox: parse a request into method and parameters, write the reply.

Parameters come as a portal accepts them: a GET query string, a JSON body, a
form (urlencoded or multipart), merged with the body winning. A malformed
request gets a 4xx with an error body, and nothing ever answers with a stack
trace. Request lines are never logged: their path holds the webhook code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from crmbridge.bitrix.commands import parse_php_query, php_params
from devtools.sandbox import control, record_page
from devtools.sandbox.errors import RestError
from devtools.sandbox.portal import Portal, Reply

logger = logging.getLogger("devtools.sandbox")

MAX_BODY_BYTES = 16 * 1024 * 1024
_REST_PATH = re.compile(r"^/rest/(?P<user>[^/]+)/(?P<code>[^/]+)/(?P<method>[^/]+?)/?$")


class SandboxHTTPServer(ThreadingHTTPServer):
    """Threads per connection; closes the open keep-alive connections on stop."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], portal: Portal, stopping: threading.Event) -> None:
        self.portal = portal
        self.stopping = stopping  # set on stop: delayed answers are written at once
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, SandboxRequestHandler)

    def process_request_thread(self, request, client_address) -> None:
        with self._connections_lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already gone
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request, client_address) -> None:
        # A client that hung up (e.g. after its read timeout) is normal here.
        logger.debug("Sandbox connection error", exc_info=True)


class SandboxRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Bitrix24Sandbox/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 120  # idle keep-alive connections are closed, as a portal's proxy does
    server: SandboxHTTPServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args) -> None:
        pass  # the request line holds the webhook code

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed HTTP (bad request line, headers): a JSON error instead of the HTML default."""
        self.close_connection = True
        self.request_version = self.protocol_version  # even a garbled request gets a full answer
        self._write(Reply(code, {"error": "INVALID_REQUEST", "error_description": message or "Bad request"}))

    def _serve(self) -> None:
        try:
            reply = self._route()
        except RestError as exc:
            reply = Reply(exc.status, exc.body())
        except Exception:
            logger.exception("Sandbox failed on a request")
            reply = Reply(500, {"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"})
        if reply.delay > 0:
            self.server.stopping.wait(reply.delay)
        self._write(reply)

    def _route(self) -> Reply:
        parts = urlsplit(self.path)
        body = self._body()
        if parts.path.startswith("/_sandbox/"):
            refusal = control.cross_site_reason(self.headers, *self.server.server_address[:2])
            if refusal:
                return Reply(403, {"error": "FORBIDDEN", "error_description": refusal})
            return control.handle(self.server.portal, self.command, parts.path, body)
        if parts.path.startswith("/crm/"):  # the record pages the admin links to
            return record_page.handle(self.server.portal.store, parts.path) or Reply(404, html="Not found")
        if not parts.path.startswith("/rest/"):
            return Reply(404, {"error": "NOT_FOUND", "error_description": "Unknown path"})
        match = _REST_PATH.match(parts.path)
        params = {**parse_php_query(parts.query), **self._body_params(body)}
        portal = self.server.portal
        if match is None:  # no user/code/method: the portal cannot even authenticate
            return portal.handle_rest("", "", "", params)
        return portal.handle_rest(unquote(match["user"]), unquote(match["code"]), unquote(match["method"]), params)

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise RestError(411, "INVALID_REQUEST", "Content-Length required")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            raise RestError(413 if length > 0 else 400, "INVALID_REQUEST", "Invalid or too large Content-Length")
        return self.rfile.read(length) if length else b""

    def _body_params(self, body: bytes) -> dict:
        if not body:
            return {}
        content_type = self.headers.get("Content-Type", "")
        try:
            if content_type.startswith("multipart/form-data"):
                return _multipart(content_type, body)
            text = body.decode("utf-8")
            if content_type.startswith("application/json") or text.lstrip().startswith("{"):
                params = json.loads(text)
                if not isinstance(params, dict):
                    raise RestError(400, "INVALID_REQUEST", "The JSON body must be an object")
                return params
            return parse_php_query(text)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deeply
            raise RestError(400, "INVALID_REQUEST", f"Cannot parse the request body: {type(exc).__name__}") from None

    def _write(self, reply: Reply) -> None:
        if reply.html is not None:
            data, content_type = reply.html.encode(), "text/html; charset=utf-8"
        else:
            data, content_type = json.dumps(reply.payload).encode(), "application/json; charset=utf-8"
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client is gone (e.g. it timed out)


def _multipart(content_type: str, body: bytes) -> dict:
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    if not message.is_multipart():
        raise RestError(400, "INVALID_REQUEST", "Malformed multipart body")
    pairs = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name and not part.get_filename():
            pairs.append((name, part.get_payload(decode=True).decode("utf-8")))
    return php_params(pairs)
