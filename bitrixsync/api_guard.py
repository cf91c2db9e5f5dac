"""What every API request passes before a view reads its body, and one JSON shape for every API error.

``ApiGuardMiddleware`` runs first (after ``SecurityMiddleware``), on API paths
(everything but the admin, the docs pages and static files):

* a ``Content-Length`` over ``API_MAX_BODY_BYTES`` is a 413, answered before a
  byte of the body is read; an invalid one is a 400; a body without a length
  (``Transfer-Encoding: chunked``) is a 411: WSGI would silently read it as empty.
  A client cannot send more than it declared: Django reads at most
  ``Content-Length`` bytes (``LimitedStream``), so the length is the limit.
  DRF's JSON parser reads the stream itself, bypassing Django's
  ``DATA_UPLOAD_MAX_MEMORY_SIZE`` check; this check covers every parser;
* a ``charset`` other than UTF-8 (or its subset ASCII) is a 415: JSON is UTF-8
  (RFC 8259) and the portal sends UTF-8 forms, while Python "codecs" such as
  rot13, zlib_codec or base64 made the parsers fail with a 500. The charset
  checked is the one Django decodes the body with, read by Django's own parser
  (``parse_header_parameters``: the *last* ``charset``, RFC 2231 ``charset*=``
  included). A Content-Type with more than one charset parameter (``charset``,
  ``charset*``, continuations) is a 415 whatever they say: readers disagree on
  which one counts (this guard once read the first, Django reads the last);
* a Content-Type Django's parser cannot read is a 415: an RFC 2231 parameter
  naming an unknown charset (``x*=bogus''v``: ValueError), or a continuation
  mixed with a whole value (``charset*0*=utf-8''a; charset*=utf-8''b``: a
  TypeError inside the standard library's ``email`` parser). Any exception of
  that parser counts (``content_type_parts``): the header is the client's, the
  parser's bugs are not the client's to trigger as 500s. Django parses the Content-Type
  while *building* the request, before any middleware, so ``GuardedWSGIHandler``
  and ``GuardedASGIHandler`` (``bitrixsync/wsgi.py``, ``asgi.py``) build requests that
  survive it and leave the answer to this guard;
* an error answer that is not JSON (Django's 404 and 500 pages, ``require_GET``'s
  empty 405, the 400 for too many form fields) is replaced by
  ``{"detail": "<reason>"}`` with the same status and headers (``Allow``,
  ``Retry-After``, ``WWW-Authenticate``). With ``DEBUG`` on, 404 and 500 keep
  Django's technical pages (secrets hidden, see ``bitrixsync.error_reports``).

Every error body of the API is a JSON object with ``detail``, as DRF's own are.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from http import HTTPStatus

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler, ASGIRequest
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.http import parse_header_parameters

# Pages for people, not API clients: they keep Django's HTML.
NON_API_PREFIXES = ("/admin/", "/api/docs", "/api/redoc")
ACCEPTED_CHARSETS = frozenset({"utf-8", "ascii"})
KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


def is_api_path(path: str) -> bool:
    static = "/" + settings.STATIC_URL.lstrip("/") if settings.STATIC_URL else None
    return not path.startswith(NON_API_PREFIXES) and not (static and path.startswith(static))


def error(status: int, detail: str, **extra: object) -> JsonResponse:
    response = JsonResponse({"detail": detail, **extra}, status=status)
    # Answered before the inner middleware (CommonMiddleware sets it there): with a length the
    # client has the whole answer at once, even while a server still expects the unread body.
    response["Content-Length"] = str(len(response.content))
    return response


def body_refusal(request: HttpRequest) -> JsonResponse | None:
    """The answer to a body no endpoint may read, or None."""
    raw_length = request.META.get("CONTENT_LENGTH") or ""
    if not raw_length.strip() and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        return error(411, "Send the body with a Content-Length (chunked bodies are not accepted).")
    try:
        length = int(raw_length or 0)
    except ValueError:
        length = -1
    if length < 0:
        return error(400, "Invalid Content-Length.")
    limit = settings.API_MAX_BODY_BYTES
    if length > limit:
        return error(413, f"The body is larger than {limit} bytes.", limit_bytes=limit)
    return charset_refusal(request.META.get("CONTENT_TYPE", ""))


def charset_refusal(content_type: str) -> JsonResponse | None:
    """A 415 unless ``content_type`` has at most one charset parameter and Django would decode it as UTF-8."""
    parts = content_type_parts(content_type)  # what HttpRequest.encoding is set from
    if parts is None:
        return error(415, "Unreadable Content-Type parameters: send Content-Type: application/json; charset=utf-8.")
    if charset_parameter_count(content_type) > 1:
        return error(415, "Send one charset parameter (e.g. Content-Type: application/json; charset=utf-8).")
    charset = parts[1].get("charset")
    if charset is not None and not charset_accepted(charset):
        return error(415, "Unsupported charset: send UTF-8 (e.g. Content-Type: application/json; charset=utf-8).")
    return None


def content_type_parts(content_type: str) -> tuple[str, dict] | None:
    """Django's reading of a Content-Type (media type, parameters), or None when its parser raises."""
    try:
        return parse_header_parameters(content_type)
    except Exception:  # ValueError, TypeError from the stdlib's email parser...: unreadable, see the module docstring
        return None


def charset_parameter_count(content_type: str) -> int:
    """``charset``, ``charset*`` and RFC 2231 continuations (``charset*0*``) each count once.

    A plain split on ";": a quoted value holding ";charset=" counts too, which only refuses more.
    """
    names = (parameter.partition("=")[0].strip().lower() for parameter in content_type.split(";")[1:])
    return sum(1 for name in names if name.partition("*")[0] == "charset")


def charset_accepted(charset: str) -> bool:
    try:
        return codecs.lookup(charset).name in ACCEPTED_CHARSETS
    except (LookupError, ValueError):
        return False


def as_json_error(response: HttpResponse) -> HttpResponse:
    """An HTML (or empty) error answer turned into the API's JSON shape; others as they are."""
    if response.status_code < 400 or response.get("Content-Type", "").startswith("application/json"):
        return response
    if settings.DEBUG and response.status_code == 500:
        return response  # the traceback is for the developer; a 404's URL list helps no API client
    try:
        reason = HTTPStatus(response.status_code).phrase
    except ValueError:
        reason = "Error"
    converted = error(response.status_code, f"{reason}.")
    for name in KEPT_HEADERS:
        if name in response:
            converted[name] = response[name]
    return converted


class _LenientContentType:
    """A request that survives a Content-Type Django's parser raises on (see the module docstring)."""

    def _set_content_type_params(self, meta: dict) -> None:
        if content_type_parts(meta.get("CONTENT_TYPE", "")) is not None:
            super()._set_content_type_params(meta)  # type: ignore[misc]
        else:  # the guard answers 415 on API paths; elsewhere: no parameters, UTF-8
            self.content_type = meta.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
            self.content_params = {}


class GuardedWSGIRequest(_LenientContentType, WSGIRequest):
    pass


class GuardedASGIRequest(_LenientContentType, ASGIRequest):
    pass


class GuardedWSGIHandler(WSGIHandler):
    request_class = GuardedWSGIRequest


class GuardedASGIHandler(ASGIHandler):
    request_class = GuardedASGIRequest


class ApiGuardMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not is_api_path(request.path_info):
            return self.get_response(request)
        return body_refusal(request) or as_json_error(self.get_response(request))
