"""The "Bitrix sync" dashboard in the Django admin.

Mounted by ``SyncRecordAdmin.get_urls`` (``crmbridge/admin.py``) under
``/admin/crmbridge/syncrecord/dashboard/``, wrapped in ``admin_site.admin_view``
(signed-in staff, CSRF, no caching). Permissions:

* viewing: ``crmbridge.view_syncrecord`` (or ``change_syncrecord``; superusers have both);
* the buttons: ``crmbridge.change_syncrecord``.

Every button is a POST to ``action_view``, which first answers with a
confirmation page and acts only on the confirmed POST, then reports the result
with ``messages`` and goes back. Pages are bounded (``PAGE_SIZE`` rows, cursor
links for more, payloads cut to a preview with a link to the whole letter);
nothing reads a whole stream.

Layout (``bitrix_dashboard.html``): a summary strip with the verdict of the
doctor's checks (``run_doctor`` without the portal call, which "Test
connection" makes on demand), then sections reachable from a bar at the top.
The live part (``_bitrix_live.html``) is fetched again every
``REFRESH_SECONDS`` with ``?partial=live`` and swapped in place, keeping the
scroll position; it pauses while rows are selected.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from crmbridge.diagnostics import stream_actions
from crmbridge.diagnostics.bitrix_check import check_bitrix_connection
from crmbridge.diagnostics.config_facts import bitrix_config, full_worker_config, redis_config
from crmbridge.diagnostics.dashboard_rows import (
    ago,
    dead_letter_row,
    listed_records,
    recent_row,
    short_time,
    with_pending_records,
)
from crmbridge.diagnostics.dead_letter_status import dead_letter_count, dead_letter_page
from crmbridge.diagnostics.doctor import FAIL, OK, SKIP, WARN, DoctorOptions, default_stuck_seconds, run_doctor
from crmbridge.diagnostics.key_problems import key_problems
from crmbridge.diagnostics.minute_chart import chart_rows, minute_chart_svg
from crmbridge.diagnostics.redis_errors import redis_error_reason
from crmbridge.diagnostics.stream_status import (
    consumers,
    pending_page,
    queue_status,
    recent_messages,
    redis_now_ms,
    stream_info,
)
from crmbridge.diagnostics.sync_status import outbox_backlog
from crmbridge.diagnostics.timestamps import read_marks
from crmbridge.diagnostics.worker_status import read_heartbeats, task_status
from crmbridge.redis_io import contact_counts, streams, telemetry
from crmbridge.redis_io.connection import get_redis
from crmbridge.worker import dead_letters

logger = logging.getLogger(__name__)

PAGE_SIZE = 25
REFRESH_SECONDS = 5
MAX_IDS_PER_ACTION = 100
VIEW_PERMS = ("crmbridge.view_syncrecord", "crmbridge.change_syncrecord")
ACT_PERM = "crmbridge.change_syncrecord"
STREAM_NAMES = {"operations": streams.operations_stream, "webhooks": streams.webhooks_stream}


def can_view(request: HttpRequest) -> bool:
    user = request.user
    return user.is_active and user.is_staff and any(user.has_perm(perm) for perm in VIEW_PERMS)


def can_act(request: HttpRequest) -> bool:
    return request.user.is_active and request.user.is_staff and request.user.has_perm(ACT_PERM)


def _require_view(request: HttpRequest) -> None:
    if not can_view(request):
        raise PermissionDenied


def _base_context(request: HttpRequest, admin_site, title: str) -> dict:
    return {
        **admin_site.each_context(request),
        "title": title,
        "can_act": can_act(request),
        "dashboard_url": reverse(f"{admin_site.name}:crmbridge_dashboard"),
        "action_url": reverse(f"{admin_site.name}:crmbridge_dashboard_action"),
        "pending_url": reverse(f"{admin_site.name}:crmbridge_dashboard_pending"),
        "dead_url": reverse(f"{admin_site.name}:crmbridge_dashboard_dead"),
    }


def _redis_context(request: HttpRequest, build: Callable[[redis.Redis], dict]) -> dict:
    """``build``'s context, or ``redis_error`` with the reason when Redis is down."""
    try:
        return build(get_redis())
    except redis.RedisError as exc:
        reason = redis_error_reason(exc)
        logger.warning("[DASHBOARD] %s", reason)
        return {"redis_error": reason}


def _overview(client: redis.Redis) -> dict:
    now_ms = redis_now_ms(client)
    workers = read_heartbeats(client)
    stream_rows = []
    problems = {wrong.key: wrong.describe() for wrong in key_problems(client)}
    for label, name_of in STREAM_NAMES.items():
        stream = name_of()
        stream_rows.append(
            {
                "label": label,
                "name": stream,
                "problem": problems.get(stream, ""),
                "info": stream_info(client, stream),
                "queue": queue_status(client, stream, now_ms=now_ms),
                "consumers": consumers(client, stream),
                "pending": with_pending_records(client, stream, pending_page(client, stream, count=PAGE_SIZE)),
                "recent": [recent_row(m) for m in recent_messages(client, stream, count=10)],
            }
        )
    for worker in workers:
        worker["started"] = short_time(worker["started_at"] or "")
    dead_stream = streams.dead_letter_stream()
    rows, capped = chart_rows(client, telemetry.read_minutes(client, 60))
    ages = [s["queue"]["oldest_pending_age_seconds"] or 0 for s in stream_rows]
    return {
        "streams": stream_rows,
        "unacknowledged": sum(s["queue"]["unacknowledged"] for s in stream_rows),
        "oldest_waiting_seconds": max(ages, default=0),
        "dead_stream": {
            "name": dead_stream,
            "info": stream_info(client, dead_stream),
            "problem": problems.get(dead_stream, ""),
        },
        "workers": workers,
        "live_workers": sum(1 for w in workers if w["fresh"]),
        "worker_task_status": task_status(workers),
        "chart": minute_chart_svg(rows, capped=capped),
        "dead_letters": [dead_letter_row(letter) for letter in dead_letter_page(client, count=PAGE_SIZE)],
        "dead_letter_count": dead_letter_count(client),
        "outbox_backlog": outbox_backlog(client),
        "contacts": _contact_outcomes(client),
        **_marks_with_ages(client),
    }


def _contact_outcomes(client: redis.Redis) -> dict:
    counts = contact_counts.read(client)
    return {**counts, "adopted_total": counts["adopted_email"] + counts["adopted_phone"]}


def _marks_with_ages(client: redis.Redis) -> dict:
    marks = read_marks(client)
    now = time.time()
    for mark in marks.values():
        if mark:
            mark["ago"] = ago(mark["at_unix"], now)
            mark["when"] = short_time(mark["at"])
    return marks


def verdict() -> dict:
    """The summary's verdict: the doctor's checks, without the portal call (the Test connection button makes it).

    ``level``: ``ok`` | ``warn`` | ``fail``; ``problems``: the findings that are not OK, failures first;
    ``passed`` of ``total`` are OK; ``skipped`` checks (could not run) are in neither.
    """
    findings = run_doctor(get_redis(), DoctorOptions(stuck_seconds=default_stuck_seconds(), check_bitrix=False))
    problems = sorted((f for f in findings if f.status in (FAIL, WARN)), key=lambda f: f.status != FAIL)
    level = "fail" if any(f.status == FAIL for f in problems) else "warn" if problems else "ok"
    headline = {"ok": "Healthy", "warn": "Needs attention", "fail": "Failing"}[level]
    # A skipped check is neither OK nor a problem: counted apart, not in the total.
    passed = sum(1 for f in findings if f.status == OK)
    skipped = sum(1 for f in findings if f.status == SKIP)
    return {
        "level": level, "headline": headline, "problems": problems,
        "passed": passed, "skipped": skipped, "total": len(findings) - skipped,
    }  # fmt: skip


def _live_context(request: HttpRequest) -> dict:
    context = _redis_context(request, _overview)
    context.setdefault("outbox_backlog", outbox_backlog())
    context.update({"verdict": verdict(), "page_size": PAGE_SIZE, "refresh_seconds": REFRESH_SECONDS})
    return context


def dashboard_view(request: HttpRequest, admin_site) -> HttpResponse:
    """The whole page, or with ``?partial=live`` only its live part (what the auto-refresh fetches)."""
    _require_view(request)
    context = _base_context(request, admin_site, "Bitrix sync")
    context.update(_live_context(request))
    context["back_url"] = context["dashboard_url"]  # not the ?partial=live the refresh fetched
    if request.GET.get("partial") == "live":
        return render(request, "admin/crmbridge/_bitrix_live.html", context)
    context.update(
        {
            "worker_config": full_worker_config(),
            "bitrix": bitrix_config(),
            "redis_config": redis_config(),
            "is_nav_sidebar_enabled": False,  # the tables get the page's whole width
        }
    )
    return render(request, "admin/crmbridge/bitrix_dashboard.html", context)


def dead_letter_view(request: HttpRequest, admin_site, dead_id: str) -> HttpResponse:
    """One dead letter, whole, as JSON (the dashboard shows a preview and links here)."""
    _require_view(request)
    if not streams.STREAM_ID.match(dead_id):
        raise Http404("not a stream ID")
    try:
        found = get_redis().xrange(streams.dead_letter_stream(), min=dead_id, max=dead_id, count=1)
    except redis.RedisError as exc:
        return HttpResponse(redis_error_reason(exc), status=503, content_type="text/plain; charset=utf-8")
    if not found:
        raise Http404("no such dead letter")
    letter = dead_letters.parse_dead_letter(*found[0])
    body = json.dumps(letter, indent=2, ensure_ascii=False, default=str)
    return HttpResponse(body, content_type="application/json; charset=utf-8")


def pending_view(request: HttpRequest, admin_site) -> HttpResponse:
    """One page of a stream's pending list, after the ``after`` ID."""
    _require_view(request)
    label = request.GET.get("stream", "operations")
    if label not in STREAM_NAMES:
        label = "operations"
    after = request.GET.get("after") or None
    stream = STREAM_NAMES[label]()
    context = _base_context(request, admin_site, f"Pending messages: {stream}")
    context.update(
        _redis_context(request, lambda client: {"pending": pending_page(client, stream, after=after, count=PAGE_SIZE)})
    )
    rows = context.get("pending") or []
    if rows:
        context["pending"] = _redis_context(
            request, lambda client: {"rows": with_pending_records(client, stream, rows)}
        ).get("rows", rows)
    context.update({"label": label, "stream": stream, "after": after, "page_size": PAGE_SIZE})
    context["next_after"] = rows[-1]["id"] if len(rows) == PAGE_SIZE else None
    return render(request, "admin/crmbridge/bitrix_pending.html", context)


def dead_letters_view(request: HttpRequest, admin_site) -> HttpResponse:
    """One page of dead letters, newest first, older than the ``before`` ID."""
    _require_view(request)
    before = request.GET.get("before") or None
    context = _base_context(request, admin_site, "Dead letters")
    context.update(
        _redis_context(
            request,
            lambda client: {
                "dead_letters": dead_letter_page(client, before=before, count=PAGE_SIZE),
                "dead_letter_count": dead_letter_count(client),
            },
        )
    )
    rows = context.get("dead_letters") or []
    context["dead_letters"] = [dead_letter_row(letter) for letter in rows]
    context.update({"before": before, "page_size": PAGE_SIZE})
    context["next_before"] = rows[-1]["id"] if len(rows) == PAGE_SIZE else None
    return render(request, "admin/crmbridge/bitrix_dead_letters.html", context)


@dataclass(frozen=True)
class Action:
    title: str
    needs_ids: bool
    needs_stream: bool
    run: Callable[[redis.Redis, str, list[str]], tuple[int, str]]


def _retry(client, stream, ids):
    n = stream_actions.retry_pending_now(client, stream, ids)
    return messages.SUCCESS if n else messages.WARNING, f"Retried {n} of {len(ids)} pending message(s) now."


def _to_dead(client, stream, ids):
    n = stream_actions.move_pending_to_dead(client, stream, ids)
    level = messages.SUCCESS if n else messages.WARNING
    return level, f"Moved {n} of {len(ids)} pending message(s) to the dead letters."


def _requeue(client, stream, ids):
    n = dead_letters.requeue(client, ids)
    return messages.SUCCESS if n else messages.WARNING, f"Requeued {n} of {len(ids)} dead letter(s)."


def _requeue_all(client, stream, ids):
    result = stream_actions.requeue_all_dead(client)
    text = f"Requeued {result.requeued} dead letter(s); {result.remaining} left in the dead letters"
    if result.skipped:
        text += f" ({result.skipped} without a payload were skipped)"
    return messages.SUCCESS if not result.remaining else messages.WARNING, text + "."


def _delete(client, stream, ids):
    n = dead_letters.delete(client, ids)
    return messages.SUCCESS if n else messages.WARNING, f"Deleted {n} of {len(ids)} dead letter(s)."


def _test_connection(client, stream, ids):
    check = check_bitrix_connection()
    if check.ok:
        return messages.SUCCESS, f"Bitrix connection OK: {check.summary}."
    return messages.ERROR, f"Bitrix connection failed ({check.kind}): {check.summary}"


ACTIONS: dict[str, Action] = {
    "retry_pending": Action("Retry now", True, True, _retry),
    "dead_pending": Action("Move to dead letters", True, True, _to_dead),
    "requeue": Action("Requeue dead letters", True, False, _requeue),
    "requeue_all": Action("Requeue all dead letters", False, False, _requeue_all),
    "delete": Action("Delete dead letters", True, False, _delete),
    "test_connection": Action("Test the Bitrix connection", False, False, _test_connection),
}


def _parse_action(request: HttpRequest) -> tuple[str, list[str]]:
    """``action`` may be ``name`` (ids from the checkboxes) or ``name:<id>`` (a row's own button)."""
    raw = request.POST.get("action", "")
    name, _, single = raw.partition(":")
    ids = [single] if single else request.POST.getlist("ids")
    return name, [i for i in ids if i and len(i) <= 64][:MAX_IDS_PER_ACTION]


def _back(request: HttpRequest, admin_site) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return reverse(f"{admin_site.name}:crmbridge_dashboard")


def _listed(name: str, stream: str, ids: list[str]) -> list[dict]:
    """The ids a confirmation lists, each with its record; without Redis, the ids alone."""
    shown = ids[:20]
    try:
        if name in ("requeue", "delete"):
            return listed_records(get_redis(), streams.dead_letter_stream(), shown, dead=True)
        if stream:
            return listed_records(get_redis(), stream, shown, dead=False)
    except redis.RedisError:
        pass
    return [{"id": entry_id, "record": ""} for entry_id in shown]


def action_view(request: HttpRequest, admin_site) -> HttpResponse:
    """POST only. Without ``confirmed=yes``: the confirmation page. With it: act, report, go back."""
    if request.method != "POST":
        return HttpResponseRedirect(reverse(f"{admin_site.name}:crmbridge_dashboard"))
    if not can_act(request):
        raise PermissionDenied
    name, ids = _parse_action(request)
    action = ACTIONS.get(name)
    label = request.POST.get("stream", "operations")
    back = _back(request, admin_site)
    if action is None or (action.needs_stream and label not in STREAM_NAMES):
        messages.error(request, "Unknown action.")
        return HttpResponseRedirect(back)
    if action.needs_ids and not ids:
        messages.warning(request, "Select at least one message first.")
        return HttpResponseRedirect(back)
    stream = STREAM_NAMES[label]() if action.needs_stream else ""
    if request.POST.get("confirmed") != "yes":
        context = _base_context(request, admin_site, f"Confirm: {action.title}")
        context.update({"action": action, "action_name": name, "ids": ids, "stream_label": label, "next": back})
        context.update({"stream": stream, "listed": _listed(name, stream, ids)})
        return render(request, "admin/crmbridge/bitrix_confirm_action.html", context)
    try:
        level, text = action.run(get_redis(), stream, ids)
    except redis.RedisError as exc:
        level, text = messages.ERROR, f"{action.title} failed: {redis_error_reason(exc)}"
    logger.info("[DASHBOARD] %s by %s: %s", name, request.user.get_username(), text)
    messages.add_message(request, level, text)
    return HttpResponseRedirect(back)
