"""The fake portal behind the HTTP server: what happens to one REST request.

The order is the portal's: authentication (wrong code: 401), the leaky-bucket
limit (503), injected faults, then the method (or ``batch``, which runs up to
50 commands and counts as one request for the limit).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crmbridge.bitrix.commands import decode_command, resolve_reference
from crmbridge.bitrix.rate_limit import LeakyBucket
from devtools.sandbox import crm
from devtools.sandbox.deal_depth import DealDepthMethods
from devtools.sandbox.errors import RestError
from devtools.sandbox.events import EventSender
from devtools.sandbox.faults import AUTH_ERRORS, FaultInjector, Faults
from devtools.sandbox.methods import Caller, CrmMethods, Outcome
from devtools.sandbox.portal_setup import PortalSetup
from devtools.sandbox.stats import SandboxStats
from devtools.sandbox.store import RecordStore

MAX_BATCH_COMMANDS = 50
MANAGER_USER_ID = "2"
# How long the portal counts operating time (the reset time of the `time` block).
OPERATING_WINDOW_SECONDS = 600
_OPERATION_LIMIT_TEXT = "Method is blocked due to operation time limit."
_MANAGER = Caller(user_id=MANAGER_USER_ID, own=False)
HTML_PAGE = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"


@dataclass
class Reply:
    status: int
    payload: dict | list | None = None
    html: str | None = None
    delay: float = 0.0  # seconds to hold the answer back (the timeout fault)


class Portal:
    def __init__(
        self,
        *,
        user_id: str,
        code: str,
        manager_code: str | None,
        rate: float | None,
        burst: int | None,
        db_path: str | None,
        base_url: Callable[[], str],
        events: dict,
        setup: dict | None = None,
    ) -> None:
        self.integration_user = user_id
        self._webhooks = {user_id: code}
        if manager_code:
            self._webhooks[MANAGER_USER_ID] = manager_code
        self.store = RecordStore(db_path)
        self.stats = SandboxStats()
        self.faults = FaultInjector()
        self.bucket: LeakyBucket | None = None
        self.set_limit(rate, burst)
        self.events = EventSender(base_url=base_url, on_result=self._count_event, **events)
        self.setup = PortalSetup(setup)
        self.crm = CrmMethods(self.store, self.events, self.setup)
        self.methods = self.crm.table()
        self.methods.update(DealDepthMethods(self.store, self.setup, self.crm.notify_deal_update).table())

    def set_limit(self, rate: float | None, burst: int | None) -> None:
        """The leaky bucket: ``rate`` requests/s drained, ``burst`` deep; ``rate=None`` lifts the limit."""
        if rate is not None and (rate <= 0 or (burst is not None and burst < 1)):
            raise ValueError("rate must be positive and burst at least 1")
        self.bucket = LeakyBucket(rate, burst or 50) if rate is not None else None

    def limit(self) -> dict:
        bucket = self.bucket
        return {"rate": bucket.rate, "burst": bucket.capacity} if bucket else {"rate": None, "burst": None}

    # -- one REST request ----------------------------------------------------------
    def handle_rest(self, user_id: str, code: str, method: str, params: dict) -> Reply:
        started = time.time()
        method = method.lower().removesuffix(".json")
        self.stats.count("requests")
        if method:
            self.stats.count("by_method", method)
        delay = 0.0
        try:
            caller = self._authenticate(user_id, code)
            self._check_limit()
            failure = self._injected_failure()
            if failure is not None:
                return failure
            if self.faults.roll(self.faults.faults.timeout_share):
                self.stats.count("faults", "timeout")
                delay = self.faults.faults.timeout_seconds
            outcome = self._batch(params, caller) if method == "batch" else self._call(method, params, caller)
            return Reply(200, envelope(outcome, started), delay=delay)
        except RestError as exc:
            self.stats.count("errors", exc.code)
            body = exc.body()
            if exc.reset_at is not None:
                body["time"] = time_block(started, exc.reset_at)
            return Reply(exc.status, body, delay=delay)

    def _authenticate(self, user_id: str, code: str) -> Caller:
        expected = self._webhooks.get(user_id)
        if expected is None or not secrets.compare_digest(expected.encode(), code.encode()):
            raise RestError(401, "NO_AUTH_FOUND", "Wrong authorization data")
        auth_error = self.faults.faults.auth_error
        if auth_error:
            self.stats.count("faults", "auth_error")
            raise RestError(AUTH_ERRORS[auth_error], auth_error, AUTH_DESCRIPTIONS.get(auth_error, auth_error))
        return Caller(user_id=user_id, own=user_id == self.integration_user)

    def _check_limit(self) -> None:
        bucket = self.bucket
        if bucket is not None and bucket.try_add() > 0:
            self.stats.count("rate_limited")
            raise RestError(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")

    def _injected_failure(self) -> Reply | None:
        faults = self.faults.faults
        if faults.latency_ms > 0:
            time.sleep(faults.latency_ms / 1000)
        if self.faults.roll(faults.error_500_share):
            self.stats.count("faults", "error_500")
            raise RestError(500, "INTERNAL_SERVER_ERROR", "Internal server error")
        if self.faults.roll(faults.error_503_share):
            self.stats.count("faults", "error_503")
            raise RestError(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
        if self.faults.roll(faults.html_share):
            self.stats.count("faults", "html")
            return Reply(502, html=HTML_PAGE)
        return None

    # -- methods -----------------------------------------------------------------------
    def _call(self, method: str, params: dict, caller: Caller) -> Outcome:
        method = method.lower().removesuffix(".json")
        handler = self.methods.get(method)
        if handler is None:
            raise RestError(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
        if method in self.faults.faults.denied_methods:
            self.stats.count("faults", "denied_method")
            raise RestError(403, "insufficient_scope", AUTH_DESCRIPTIONS["insufficient_scope"])
        blocked = self.faults.method_blocked_until(method)
        if blocked is not None:
            self.stats.count("faults", "operation_limit")
            raise RestError(429, "OPERATION_TIME_LIMIT", _OPERATION_LIMIT_TEXT, reset_at=blocked)
        self.stats.count("commands", method)
        # Top-level parameter names are case-insensitive (fields/FIELDS, id/ID).
        return handler({str(k).lower(): v for k, v in params.items()}, caller)

    def _batch(self, params: dict, caller: Caller) -> Outcome:
        params = {str(k).lower(): v for k, v in params.items()}
        commands = _commands(params.get("cmd"))
        halt = str(params.get("halt", "0")).lower() in ("1", "true", "y")
        maps: dict[str, dict[str, Any]] = {name: {} for name in ("result", "error", "total", "next", "time")}
        for key, (method, command_params) in commands.items():
            if not self._batch_command(key, method, command_params, maps, caller) and halt:
                break
        return Outcome(
            {
                "result": php_map(maps["result"]),
                "result_error": php_map(maps["error"]),
                "result_total": php_map(maps["total"]),
                "result_next": php_map(maps["next"]),
                "result_time": php_map(maps["time"]),
            }
        )

    def _batch_command(self, key: str, method: str, params: dict, maps: dict, caller: Caller) -> bool:
        """Run one command into the result maps; ``False`` if it failed."""
        started = time.time()
        try:
            outcome = self._call(method, _substitute(params, maps), caller)
        except RestError as exc:
            self.stats.count("errors", exc.code)
            maps["error"][key] = exc.body()
            maps["time"][key] = time_block(started, exc.reset_at)
            return False
        maps["result"][key] = outcome.result
        if outcome.total is not None:
            maps["total"][key] = outcome.total
        if outcome.next is not None:
            maps["next"][key] = outcome.next
        maps["time"][key] = time_block(started)
        return True

    def _count_event(self, delivered: bool) -> None:
        self.stats.count("events", "sent" if delivered else "failed")

    def reset(self) -> None:
        self.store.clear()
        self.stats.reset()
        self.faults.reset()
        bucket = self.bucket
        self.set_limit(bucket.rate if bucket else None, int(bucket.capacity) if bucket else None)

    # -- inspection and control (``SandboxServer`` and ``/_sandbox/...``, see control.py) ----------
    def summary(self) -> dict:
        """Counters, record counts, duplicates by ORIGIN_ID and the limit: ``GET /_sandbox/stats``."""
        store = self.store
        return {
            **self.stats.snapshot(),
            "deals": store.count("deal"),
            "contacts": store.count("contact"),
            "duplicates": {"deal": store.duplicates("deal"), "contact": store.duplicates("contact")},
            "limit": self.limit(),
        }

    def records(self, entity: str) -> list[dict]:
        if entity not in crm.ENTITIES:
            raise ValueError(f"entity must be one of {sorted(crm.ENTITIES)}")
        return [crm.as_answer(record) for record in self.store.all(entity)]

    def set_faults(self, **changes) -> Faults:
        """See ``faults.Faults``; e.g. ``set_faults(error_503_share=0.5, seed=1)``."""
        return self.faults.configure(**changes)

    def set_events(
        self, *, handler_url: str | None = None, application_token: str = "", echo_own_changes: bool = False
    ) -> dict:
        self.events.configure(
            handler_url=handler_url, application_token=application_token, echo_own_changes=echo_own_changes
        )
        return self.events.settings()

    def move_deal_stage(self, deal_id: int, stage_id: str) -> dict:
        """A manager moves the deal in the portal's UI (fires ``ONCRMDEALUPDATE``)."""
        self.crm.update(crm.DEAL, {"id": deal_id, "fields": {"STAGE_ID": stage_id}}, _MANAGER)
        return self.crm.get(crm.DEAL, {"id": deal_id}, _MANAGER).result

    def delete_deal(self, deal_id: int) -> None:
        """A manager deletes the deal (fires ``ONCRMDEALDELETE``); ``RestError`` if there is none."""
        self.crm.delete(crm.DEAL, {"id": deal_id}, _MANAGER)


AUTH_DESCRIPTIONS = {
    "expired_token": "The access token provided has expired.",
    "invalid_token": "The access token provided is invalid.",
    "ACCESS_DENIED": "REST API is available only on commercial plans.",
    "INVALID_CREDENTIALS": "Invalid request credentials",
    "insufficient_scope": "The request requires higher privileges than provided by the webhook token",
}


def _commands(raw: Any) -> dict[str, tuple[str, dict]]:
    """``cmd`` decoded: key -> (method, params). The whole batch fails on a length or nesting error."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, list):
        raw = {str(i): command for i, command in enumerate(raw)}
    if not isinstance(raw, dict):
        raise RestError(400, "ERROR_ARGUMENT", "cmd must be an array of commands")
    if len(raw) > MAX_BATCH_COMMANDS:
        raise RestError(400, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
    commands = {str(key): decode_command(str(command)) for key, command in raw.items()}
    if any(method.lower().removesuffix(".json") == "batch" for method, _ in commands.values()):
        raise RestError(405, "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage")
    return commands


def _substitute(params: Any, maps: dict) -> Any:
    """``$result[key][FIELD]`` in any value, rewritten after decoding, as the portal does."""
    if isinstance(params, dict):
        return {key: _substitute(value, maps) for key, value in params.items()}
    if isinstance(params, str) and "$" in params:
        return resolve_reference(params, maps)
    return params


def php_map(values: dict[str, Any]) -> dict | list:
    """PHP's JSON for an array: empty -> ``[]``, keys ``0..n-1`` -> a list."""
    if not values or list(values) == [str(i) for i in range(len(values))]:
        return list(values.values())
    return values


def envelope(outcome: Outcome, started: float) -> dict:
    body: dict[str, Any] = {"result": outcome.result}
    if outcome.total is not None:
        body["total"] = outcome.total
    if outcome.next is not None:
        body["next"] = outcome.next
    body["time"] = time_block(started)
    return body


def time_block(started: float, reset_at: float | None = None) -> dict:
    finish = time.time()
    return {
        "start": started,
        "finish": finish,
        "duration": finish - started,
        "processing": finish - started,
        "date_start": datetime.fromtimestamp(started, UTC).isoformat(),
        "date_finish": datetime.fromtimestamp(finish, UTC).isoformat(),
        "operating_reset_at": reset_at if reset_at is not None else int(started) + OPERATING_WINDOW_SECONDS,
        "operating": 0,
    }
