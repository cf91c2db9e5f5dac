"""``/_sandbox/...``: inspect and drive the sandbox over HTTP (from tests, benchmarks, other processes).

A local development tool: there is no authentication, which is why the
sandbox binds to 127.0.0.1 unless told otherwise. A web page in the
developer's browser could still reach 127.0.0.1 (a cross-site form POST, or
DNS rebinding: a foreign name resolving to 127.0.0.1), so control requests
are refused with 403 unless (``cross_site_reason``):

* ``Host`` names a loopback address or the address the sandbox is bound to,
* ``Origin``, when sent, is the sandbox itself: ``http``, the same host rules,
  and the sandbox's own port (another local server is another origin: a page
  it serves must not drive the sandbox), and
* ``Sec-Fetch-Site``, when sent, is ``same-origin`` or ``none``.

Tests, benchmarks and scripts (no Origin, Host 127.0.0.1) are unaffected; so
are the REST calls under ``/rest/``.

=======================================  ===============================================
``GET  /_sandbox/stats``                 counters, record counts, duplicates by ORIGIN_ID
``GET  /_sandbox/records/deal|contact``  every record, as ``*.get`` answers
``GET|POST /_sandbox/faults``            read / change faults (JSON, see ``faults.Faults``)
``POST /_sandbox/limit``                 ``{"rate": 2, "burst": 50}``; ``{"rate": null}`` lifts it
``POST /_sandbox/reset``                 forget records, counters and faults
``GET|POST /_sandbox/setup``             pipelines, stages, custom fields (see ``portal_setup``)
``GET|POST /_sandbox/events``            ``{"handler_url", "application_token", "echo_own_changes"}``
``POST /_sandbox/deals/<id>/stage``      ``{"stage_id": "WON"}``: a manager moves the deal
``POST /_sandbox/deals/<id>/delete``     a manager deletes the deal
=======================================  ===============================================

Bad input (a body that is not a UTF-8 JSON object, a value of the wrong type)
is a 400 whose ``error_description`` names the part and what it should be;
nothing is changed then.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any
from urllib.parse import urlsplit

from devtools.sandbox.crm import ENTITIES
from devtools.sandbox.errors import RestError
from devtools.sandbox.portal import Portal, Reply

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
_DEAL_ACTION = re.compile(r"^/_sandbox/deals/(?P<id>\d+)/(?P<action>stage|delete)/?$")


def cross_site_reason(headers: Mapping[str, str], bound_host: str, bound_port: int) -> str:
    """Why this control request looks cross-site ("" when it does not); see the module docstring."""
    allowed = LOOPBACK_NAMES | ({bound_host} - {"0.0.0.0", "::", ""})
    if _host_name(headers.get("Host", "")) not in allowed:
        return "control requests must use a loopback Host (127.0.0.1, localhost)"
    origin = headers.get("Origin")
    if origin is not None and not _is_own_origin(origin, allowed, bound_port):
        return "cross-origin control requests are refused"
    if headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return "cross-site control requests are refused"
    return ""


def _is_own_origin(origin: str, allowed_hosts: frozenset[str] | set[str], port: int) -> bool:
    """``http://<an allowed host>:<port>``: the sandbox's own pages, nothing else."""
    try:
        parts = urlsplit(origin)
        return parts.scheme == "http" and _host_name(parts.netloc) in allowed_hosts and (parts.port or 80) == port
    except ValueError:  # a port out of range
        return False


def _host_name(netloc: str) -> str:
    """``"127.0.0.1:8001"`` -> ``"127.0.0.1"``; ``"[::1]:8001"`` -> ``"::1"``; garbage -> ``""``."""
    try:
        return (urlsplit(f"//{netloc}").hostname or "").lower()
    except ValueError:
        return ""


def handle(portal: Portal, verb: str, path: str, body: bytes) -> Reply:
    path = path.rstrip("/")
    try:
        data = _json(body) if verb == "POST" else {}
        return Reply(200, _dispatch(portal, verb, path, data))
    except (ValueError, TypeError) as exc:
        return Reply(400, {"error": "INVALID_REQUEST", "error_description": str(exc)})
    except LookupError as exc:
        return Reply(404, {"error": "NOT_FOUND", "error_description": str(exc)})


def _dispatch(portal: Portal, verb: str, path: str, data: dict) -> Any:
    if verb == "GET":
        return _read(portal, path)
    if path == "/_sandbox/faults":
        return asdict(portal.set_faults(**data))
    if path == "/_sandbox/limit":
        portal.set_limit(*_limit(data))
        return portal.limit()
    if path == "/_sandbox/reset":
        portal.reset()
        return {"ok": True}
    if path == "/_sandbox/events":
        return portal.set_events(**_events(data))
    if path == "/_sandbox/setup":
        return portal.setup.configure(data)
    match = _DEAL_ACTION.match(path)
    if match is None:
        raise LookupError(f"no such control endpoint: POST {path}")
    return _deal_action(portal, int(match["id"]), match["action"], data)


def _read(portal: Portal, path: str) -> Any:
    if path == "/_sandbox/stats":
        return portal.summary()
    if path == "/_sandbox/faults":
        return asdict(portal.faults.snapshot())
    if path == "/_sandbox/events":
        return portal.events.settings()
    if path == "/_sandbox/setup":
        return portal.setup.snapshot()
    entity = path.removeprefix("/_sandbox/records/")
    if entity in ENTITIES:
        return portal.records(entity)
    raise LookupError(f"no such control endpoint: GET {path}")


def _deal_action(portal: Portal, deal_id: int, action: str, data: dict) -> dict:
    try:
        if action == "delete":
            portal.delete_deal(deal_id)
            return {"ok": True}
        stage_id = data.get("stage_id")
        if not isinstance(stage_id, str) or not stage_id:
            raise ValueError('send {"stage_id": "<STAGE>"}')
        return portal.move_deal_stage(deal_id, stage_id)
    except RestError as exc:
        raise LookupError(f"deal {deal_id}: {exc.description}") from None


def _json(body: bytes) -> dict:
    if not body:
        return {}
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("the body must be UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    except RecursionError:  # json's decoder recurses per level: "[[[[...]]]]"
        raise ValueError("the body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


def _limit(data: dict) -> tuple[float | None, int | None]:
    """``rate`` (a number, or null: no limit) and ``burst`` (a whole number, or null: the default)."""
    rate, burst = data.get("rate"), data.get("burst")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)):
        raise ValueError(f"rate must be a number of requests per second, or null, got {rate!r}")
    if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int)):
        raise ValueError(f"burst must be a whole number, or null, got {burst!r}")
    return rate, burst


def _events(data: dict) -> dict:
    """The keyword arguments of ``Portal.set_events``, type-checked (unknown keys stay a TypeError: a 400)."""
    url = data.get("handler_url")
    if url and not (isinstance(url, str) and urlsplit(url).scheme in ("http", "https")):  # "" or null: none
        raise ValueError(f"handler_url must be an http(s) URL, or null, got {url!r}")
    if not isinstance(data.get("application_token", ""), str):
        raise ValueError("application_token must be a string")
    if not isinstance(data.get("echo_own_changes", False), bool):
        raise ValueError("echo_own_changes must be true or false")
    return data
