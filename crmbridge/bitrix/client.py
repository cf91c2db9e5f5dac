"""The Bitrix24 REST client: the project's one HTTP entry point to the portal.

Every request goes through ``_request``: the shared rate limit first, then one
POST on a keep-alive session with connect and read timeouts, then the answer
turned into a result or a classified ``BitrixError``. The client never retries:
whether and when to try again is the worker's decision (``BitrixError.kind``),
and retrying an ``add`` blindly is how duplicates are made.

The webhook code is a password. It appears only in the URL handed to
``requests``; everything this module says (logs, errors, ``repr``) uses the
redacted URL, and ``requests``' own exceptions, which contain the full URL,
are replaced by a ``BitrixError`` without their chain.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from crmbridge import entities
from crmbridge.bitrix.commands import (
    ResultRef,
    encode_command,
    referenced_keys,
    resolve_reference,
    rewritten_in_batch,
)
from crmbridge.bitrix.errors import BitrixError, ErrorKind, classify
from crmbridge.bitrix.rate_limit import RateLimiter, RedisRateLimiter
from crmbridge.bitrix.webhook_url import RedactSecretsFilter, parse_webhook_url, redact

logger = logging.getLogger("crmbridge.bitrix.client")
# urllib3 logs each request line, webhook code included, at DEBUG: redact it
# there too, for whoever turns that logger up while debugging.
logging.getLogger("urllib3.connectionpool").addFilter(RedactSecretsFilter())

MAX_BATCH_COMMANDS = 50
# Every process waits this long after a 503 (the portal gives no retry time).
QUERY_LIMIT_PENALTY_SECONDS = 1.0
OVERLOAD_PENALTY_SECONDS = 30.0
# A 429 without ``operating_reset_at``: assume the method is blocked this long.
DEFAULT_OPERATION_BLOCK_SECONDS = 60.0
_BATCH_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")
# ``list_all`` reads at most this many pages (50 items each).
MAX_LIST_PAGES = 100


@dataclass
class BatchResult:
    """The outcome of a ``batch``: each key is in exactly one of the two maps."""

    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, BitrixError] = field(default_factory=dict)
    # A list command with more pages: its key -> the ``start`` of the next page (``result_next``).
    next: dict[str, int] = field(default_factory=dict)


class BitrixClient:
    def __init__(
        self,
        webhook_url: str,
        *,
        limiter: RateLimiter | None = None,
        connect_timeout: float = 3.05,
        read_timeout: float = 30.0,
        originator_id: str | None = None,
    ) -> None:
        self._webhook = parse_webhook_url(webhook_url)
        self.limiter = limiter
        self.timeout = (connect_timeout, read_timeout)
        # When set, find_*_by_origin only match records this system created.
        self.originator_id = originator_id
        # Since this client was made, for the worker's heartbeat (/metrics): requests sent,
        # seconds spent in them, and answers in which the portal refused (an error or HTTP >= 400).
        self.calls = 0
        self.call_seconds = 0.0
        self.rejects = 0
        self._session = requests.Session()
        self._session.headers["Accept"] = "application/json"

    @classmethod
    def from_settings(cls) -> BitrixClient:
        if not settings.BITRIX_WEBHOOK_URL:
            raise ImproperlyConfigured("BITRIX_WEBHOOK_URL is not set")
        return cls(
            settings.BITRIX_WEBHOOK_URL,
            limiter=RedisRateLimiter.from_settings(),
            connect_timeout=settings.BITRIX_HTTP_CONNECT_TIMEOUT,
            read_timeout=settings.BITRIX_HTTP_READ_TIMEOUT,
            originator_id=settings.BITRIX_ORIGINATOR_ID,
        )

    def __repr__(self) -> str:
        return f"BitrixClient({self._webhook.redacted!r})"

    __str__ = __repr__

    @property
    def redacted_url(self) -> str:
        return self._webhook.redacted

    def close(self) -> None:
        self._session.close()

    # -- calls -------------------------------------------------------------------
    def call(self, method: str, params: dict | None = None) -> Any:
        """Call one method; return its ``result`` or raise ``BitrixError``."""
        self._refuse_if_blocked(method)
        return self._request(method, params or {})["result"]

    def list_all(self, method: str, params: dict | None = None, *, start: int = 0) -> list:
        """Every page of a ``*.list`` method from ``start`` on (pages of 50, ``next`` until the last).

        At most ``MAX_LIST_PAGES`` requests: a portal answering ``next`` forever
        (or a ``next`` that does not move on) cannot hold the caller.
        """
        items: list = []
        for _ in range(MAX_LIST_PAGES):
            self._refuse_if_blocked(method)
            body = self._request(method, {**(params or {}), "start": start})
            page = body["result"]
            items += page if isinstance(page, list) else []
            following = _page_start(body.get("next"))
            if following is None or following <= start:
                break
            start = following
        return items

    def batch(self, commands: dict[str, tuple[str, dict]], *, halt: bool = False) -> BatchResult:
        """Up to 50 commands in one request (one request for the portal's limit).

        Raises ``BitrixError`` when the request as a whole fails (503, 401...).
        A command whose text Bitrix would rewrite as a ``$result`` reference is
        sent on its own after the batch, so that it arrives as typed (and so are
        the commands that reference its result).
        """
        _check_batch(commands)
        alone = _sent_alone(commands)
        together = {key: command for key, command in commands.items() if key not in alone}
        outcome = self._send_batch(together, halt=halt) if together else BatchResult()
        for key in alone:
            self._run_alone(key, commands[key], outcome, halt=halt)
        return outcome

    # -- helpers the sync needs ------------------------------------------------------
    def add(self, entity: str, fields: dict) -> int:
        """``crm.<entity>.add`` without a live-feed post; the new ID."""
        method = entities.get(entity).method("add")
        return int(self.call(method, {"fields": fields, "params": {"REGISTER_SONET_EVENT": "N"}}))

    def update(self, entity: str, record_id: int, fields: dict) -> bool:
        return bool(self.call(entities.get(entity).method("update"), {"id": record_id, "fields": fields}))

    def get(self, entity: str, record_id: int) -> dict:
        return self.call(entities.get(entity).method("get"), {"id": record_id})

    def find_by_origin(self, entity: str, origin_id: str) -> int | None:
        return self._find_by_origin(entities.get(entity).method("list"), origin_id)

    def _find_by_origin(self, method: str, origin_id: str) -> int | None:
        """The oldest record with this ``ORIGIN_ID`` (the one to keep if duplicates exist)."""
        filters = {"=ORIGIN_ID": origin_id}
        if self.originator_id:
            filters["=ORIGINATOR_ID"] = self.originator_id
        found = self.call(method, {"filter": filters, "select": ["ID"], "order": {"ID": "ASC"}, "start": -1})
        ids = [int(item["ID"]) for item in found or [] if isinstance(item, dict) and item.get("ID")]
        return min(ids) if ids else None

    # -- batch internals -----------------------------------------------------------------
    def _send_batch(self, commands: dict[str, tuple[str, dict]], *, halt: bool) -> BatchResult:
        payload = {
            "halt": 1 if halt else 0,
            "cmd": {key: encode_command(method, params) for key, (method, params) in commands.items()},
        }
        body = self._request("batch", payload)["result"]
        if not isinstance(body, dict):
            raise BitrixError("INVALID_RESPONSE", "batch answered without its result maps", method="batch")
        results = _as_map(body.get("result"))
        times = _as_map(body.get("result_time"))
        outcome = BatchResult(results={key: value for key, value in results.items() if key in commands})
        for key, value in _as_map(body.get("result_next")).items():
            if key in commands and _page_start(value) is not None:
                outcome.next[key] = _page_start(value)
        for key, error in _as_map(body.get("result_error")).items():
            if key in commands:
                outcome.errors[key] = self._command_error(commands[key][0], error, times.get(key))
        for key in commands:
            if key not in outcome.results and key not in outcome.errors:
                outcome.errors[key] = _not_executed(commands[key][0], "an earlier command failed and halt was set")
        return outcome

    def _run_alone(self, key: str, command: tuple[str, dict], outcome: BatchResult, *, halt: bool) -> None:
        method, params = command
        if halt and outcome.errors:
            outcome.errors[key] = _not_executed(method, "an earlier command failed and halt was set")
            return
        logger.debug("Sending batch command %s of %s alone: its text contains a $result-like reference", key, method)
        try:
            outcome.results[key] = self.call(method, _resolve_refs(params, outcome.results))
        except BitrixError as exc:
            outcome.errors[key] = exc

    def _command_error(self, method: str, error: Any, time_block: Any) -> BitrixError:
        """A failed command inside a batch: classified by its code alone (it has no HTTP status)."""
        error = error if isinstance(error, dict) else {"error": str(error)}
        code = str(error.get("error") or "")
        description = str(error.get("error_description") or "")
        retry_after = None
        if code.upper() == "OPERATION_TIME_LIMIT":
            retry_after = self._note_method_block(method, error, time_block)
        return BitrixError(code, description, kind=classify(code, None), method=method, retry_after=retry_after)

    # -- the one HTTP entry point ------------------------------------------------------------
    def _request(self, method: str, payload: dict) -> dict:
        if self.limiter is not None:
            self.limiter.acquire(method)
        started = time.monotonic()
        try:
            response = self._post(method, payload)
        finally:
            elapsed = time.monotonic() - started
            self.calls += 1
            self.call_seconds += elapsed
        logger.debug("Bitrix %s -> HTTP %s in %.0f ms", method, response.status_code, elapsed * 1000)
        body = self._decode(method, response)
        if "error" in body or response.status_code >= 400:
            self.rejects += 1
            raise self._http_error(method, response.status_code, body)
        if "result" not in body:
            raise BitrixError(
                "INVALID_RESPONSE", "answer without a result", http_status=response.status_code, method=method
            )
        return body

    def _post(self, method: str, payload: dict) -> requests.Response:
        data = json.dumps(payload, ensure_ascii=False, default=str).encode()
        headers = {"Content-Type": "application/json; charset=utf-8"}
        try:
            return self._session.post(self._webhook.base + method, data=data, headers=headers, timeout=self.timeout)
        except requests.ConnectionError as exc:
            # Refused, DNS, connect timeout, or a connection dropped mid-answer.
            description = f"connection to {self.redacted_url} failed: {redact(str(exc))}"
            raise BitrixError("CONNECTION_ERROR", description, method=method) from None
        except requests.Timeout:
            description = f"no answer within {self.timeout[1]:g} s; the portal may have applied the request"
            raise BitrixError("TIMEOUT", description, method=method) from None
        except requests.RequestException as exc:
            raise BitrixError("HTTP_ERROR", f"{type(exc).__name__}: {redact(str(exc))}", method=method) from None

    @staticmethod
    def _decode(method: str, response: requests.Response) -> dict:
        """The JSON body; an HTML page from a proxy (or any non-JSON) is a retryable transport error."""
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            kind = response.headers.get("Content-Type", "no content type").split(";")[0]
            description = f"the answer is not a JSON object ({kind}, {len(response.content)} bytes)"
            raise BitrixError(
                "INVALID_RESPONSE", description, http_status=response.status_code, kind=ErrorKind.RETRY, method=method
            )
        return body

    def _http_error(self, method: str, status: int, body: dict) -> BitrixError:
        code = str(body["error"] or "") if "error" in body else f"HTTP_{status}"
        description = str(body.get("error_description") or "")
        retry_after = None
        if code.upper() in ("QUERY_LIMIT_EXCEEDED", "OVERLOAD_LIMIT") and self.limiter is not None:
            overloaded = code.upper() == "OVERLOAD_LIMIT"
            self.limiter.penalize(OVERLOAD_PENALTY_SECONDS if overloaded else QUERY_LIMIT_PENALTY_SECONDS)
        elif code.upper() == "OPERATION_TIME_LIMIT":
            retry_after = self._note_method_block(method, body, body.get("time"))
        kind = classify(code, status)
        return BitrixError(code, description, http_status=status, kind=kind, method=method, retry_after=retry_after)

    # -- per-method operating-time limit ---------------------------------------------------------
    def _note_method_block(self, method: str, error: dict, time_block: Any) -> float:
        """Record a 429 ``OPERATION_TIME_LIMIT`` for every process; return the seconds to wait."""
        reset_at = error.get("operating_reset_at")
        if reset_at is None and isinstance(time_block, dict):
            reset_at = time_block.get("operating_reset_at")
        try:
            until = float(reset_at)
        except (TypeError, ValueError):
            until = time.time() + DEFAULT_OPERATION_BLOCK_SECONDS
        if self.limiter is not None:
            self.limiter.block_method(method, until)
        return max(0.0, until - time.time())

    def _refuse_if_blocked(self, method: str) -> None:
        """Fail at once, without a request, while the portal blocks ``method`` (the worker moves on)."""
        until = self.limiter.method_blocked_until(method) if self.limiter is not None else None
        if until is not None:
            raise BitrixError(
                "OPERATION_TIME_LIMIT",
                f"method blocked by the portal's operating-time limit for {until - time.time():.0f} s more",
                http_status=429,
                kind=ErrorKind.RETRY,
                method=method,
                retry_after=max(0.0, until - time.time()),
            )


def _check_batch(commands: dict[str, tuple[str, dict]]) -> None:
    if len(commands) > MAX_BATCH_COMMANDS:
        raise ValueError(f"a batch holds at most {MAX_BATCH_COMMANDS} commands, got {len(commands)}")
    bad_keys = [key for key in commands if not _BATCH_KEY.match(key)]
    if bad_keys:  # other characters break $result[key] references
        raise ValueError(f"batch keys may hold letters, digits, _ and - only: {bad_keys[:3]}")


def _sent_alone(commands: dict[str, tuple[str, dict]]) -> list[str]:
    """Keys to send outside the batch: text Bitrix would rewrite, and commands that need their results."""
    alone: list[str] = []
    for key, (_, params) in commands.items():
        if rewritten_in_batch(params) or referenced_keys(params) & set(alone):
            alone.append(key)
    return alone


def _as_map(value: Any) -> dict[str, Any]:
    """Bitrix sends an empty map as ``[]`` and keys ``0..n-1`` as a list."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return {}


def _not_executed(method: str, why: str) -> BitrixError:
    return BitrixError("NOT_EXECUTED", f"not executed: {why}", kind=ErrorKind.RETRY, method=method)


def _resolve_refs(params: Any, results: dict[str, Any]) -> Any:
    """Replace ``result_ref`` values by the results they name (for a command sent alone)."""
    if isinstance(params, ResultRef):
        return resolve_reference(params, {"result": results})
    if isinstance(params, dict):
        return {key: _resolve_refs(value, results) for key, value in params.items()}
    if isinstance(params, list | tuple):
        return [_resolve_refs(value, results) for value in params]
    return params


def _page_start(value: Any) -> int | None:
    """A ``next`` as the portal sends it (a number, sometimes as text); ``None`` for anything else."""
    if isinstance(value, bool):
        return None
    try:
        start = int(value)
    except (TypeError, ValueError):
        return None
    return start if start > 0 else None
