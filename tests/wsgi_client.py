"""One request through a WSGI application as a WSGI server makes it (no test client in between).

Django's test client builds a plain ``WSGIRequest`` itself; requests whose building
the project's own handler changes (``bitrixsync.api_guard.GuardedWSGIHandler``) go
through ``bitrixsync.wsgi.application`` here.
"""

from __future__ import annotations

import io
from wsgiref.util import setup_testing_defaults


def call_wsgi(
    application, path: str, content_type: str, body: bytes, *, method: str = "POST", **environ_extra: str
) -> tuple[int, dict, bytes]:
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "CONTENT_TYPE": content_type,
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), **environ_extra}  # fmt: skip
    setup_testing_defaults(environ)
    answer: dict = {}

    def start_response(status: str, headers: list, exc_info=None) -> None:
        answer["status"], answer["headers"] = int(status.split()[0]), dict(headers)

    chunks = application(environ, start_response)
    try:
        content = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    return answer["status"], answer["headers"], content


def call_asgi(application, path: str, content_type: str, body: bytes, *, method: str = "POST") -> tuple[int, bytes]:
    """The same through an ASGI application (one HTTP request, run to its end in this thread's loop)."""
    import asyncio

    from asgiref.sync import async_to_sync

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", content_type.encode()),
                    (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }  # fmt: skip
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict] = []

    async def receive() -> dict:
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # the client stays connected: Django stops listening once it has answered
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    async_to_sync(application)(scope, receive, send)
    start = next(message for message in sent if message["type"] == "http.response.start")
    content = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    return start["status"], content
