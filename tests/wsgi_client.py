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
