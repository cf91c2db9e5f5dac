"""``GET /metrics``: Prometheus text, read from Redis at scrape time.

Access: ``Authorization: Bearer <BITRIX_METRICS_TOKEN>`` (compared with
``secrets.compare_digest``), or a user with ``crmbridge.view_syncrecord`` by
session or API token (``Bearer``). No credentials: 401; a wrong token or a
user without the permission: 403; a method other than GET (for an allowed
caller): 405. Every answer but the metrics is the operators' JSON envelope. An
empty ``BITRIX_METRICS_TOKEN`` accepts no metrics token (users only).

Refused tokens are rate-limited per client address (``THROTTLE_METRICS_REFUSED_RATE``,
scope ``metrics_refused``, ``bitrixsync.throttling``): past the limit a 429 with
``Retry-After``, even for the right token, so the token cannot be guessed at
request speed. Only requests with an ``Authorization`` header count.

Metrics (all prefixed ``bitrixsync_``):

* ``redis_up``; ``stream_length{stream}``, ``group_exists{stream}``,
  ``group_lag{stream}``, ``group_pending{stream}``,
  ``oldest_pending_age_seconds{stream}``; ``dead_letters``.
* ``workers_live`` (fresh heartbeats), ``workers_paused``,
  ``worker_last_beat_age_seconds{worker,host,state}``.
* ``worker_operations_total{worker,outcome}``: counters since each worker
  started, from its heartbeat (they reset when a worker restarts, which
  ``rate()`` handles). The source of truth for rates.
* ``operations_last_hour{outcome,entity,op}``: a gauge, the sum of the
  per-minute stats keys (``{prefix}stats:<minute>``) over the last 60 minutes,
  for the breakdown by entity and operation. It is a window, not a counter.
* ``bitrix_call_seconds`` and ``rate_limit_wait_seconds`` (summaries per
  worker): exported when workers record ``bitrix_calls`` /
  ``bitrix_call_seconds_sum`` and ``rate_limit_waits`` /
  ``rate_limit_wait_seconds_sum`` in their heartbeat.
* ``bitrix_rejects_total{worker}``: portal answers that refused a request (an
  error or HTTP >= 400) since each worker started, from ``bitrix_rejects`` in
  its heartbeat (workers record ``bitrix_calls``, ``bitrix_call_seconds_sum``
  and ``bitrix_rejects`` once they have a portal client).
* ``contacts_total{outcome}``: users' contacts adopted by e-mail (``adopted_email``),
  by phone (``adopted_phone``), adoptions with several candidates (``ambiguous``)
  and contacts created (``created``); counters kept in Redis by every worker and
  ``bitrix_resync`` (``crmbridge.redis_io.contact_counts``), so they never reset.
* ``last_success_timestamp_seconds``, ``last_failure_timestamp_seconds``;
  ``outbox_backlog`` (database rows not yet relayed to Redis).
"""

from __future__ import annotations

import secrets
from collections import defaultdict

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from rest_framework.exceptions import AuthenticationFailed

from accounts.authentication import BearerTokenAuthentication
from bitrixsync.client_address import client_address
from bitrixsync.throttling import FailureThrottle, retry_after
from crmbridge.diagnostics.dead_letter_status import dead_letter_count
from crmbridge.diagnostics.status_views import can_view_sync
from crmbridge.diagnostics.stream_status import queue_status, redis_now_ms, stream_info
from crmbridge.diagnostics.sync_status import outbox_backlog
from crmbridge.diagnostics.worker_status import read_heartbeats
from crmbridge.redis_io import contact_counts, streams, telemetry
from crmbridge.redis_io.connection import get_redis

PREFIX = "bitrixsync_"
OUTCOMES = ("processed", "retried", "dead_lettered")
# Optional heartbeat fields -> (metric name, help).
TIMING_FIELDS = {
    "bitrix_call": ("bitrix_call_seconds", "Time spent in Bitrix REST calls"),
    "rate_limit_wait": ("rate_limit_wait_seconds", "Time workers waited for the shared rate limit"),
}


def _gauge(name: str, documentation: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, labels=labels)


class SyncCollector:
    """Reads Redis and the outbox at each scrape (bounded calls, like the status endpoints)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def collect(self):
        up = _gauge("redis_up", "1 when Redis answered this scrape")
        try:
            families = list(self._redis_families())
        except redis.RedisError:
            families = []
        up.add_metric([], 1 if families else 0)
        yield up
        yield from families
        backlog = _gauge("outbox_backlog", "Operations in the database outbox not yet in Redis")
        backlog.add_metric([], outbox_backlog(self.client if families else None))
        yield backlog

    def _redis_families(self):
        yield from self._stream_families()
        workers = read_heartbeats(self.client)
        yield from self._worker_families(workers)
        yield from self._timing_families(workers)
        yield from self._window_families()
        yield from self._mark_families()
        yield self._contact_family()

    def _stream_families(self):
        now_ms = redis_now_ms(self.client)
        families = {name: _gauge(metric, _HELP[name], ["stream"]) for name, metric in _STREAM_METRICS.items()}
        for stream in streams.consumed_streams():
            label = [stream]
            queue = queue_status(self.client, stream, now_ms=now_ms)
            families["length"].add_metric(label, stream_info(self.client, stream)["length"])
            families["group_exists"].add_metric(label, 1 if queue["group_exists"] else 0)
            families["group_lag"].add_metric(label, queue["lag"])
            families["group_pending"].add_metric(label, queue["pending"])
            families["oldest_pending_age_seconds"].add_metric(label, queue["oldest_pending_age_seconds"] or 0)
        yield from families.values()
        dead = _gauge("dead_letters", "Entries in the dead-letter stream")
        dead.add_metric([], dead_letter_count(self.client))
        yield dead

    def _worker_families(self, workers: list[dict]):
        live = _gauge("workers_live", "Workers with a fresh heartbeat")
        live.add_metric([], sum(1 for w in workers if w["fresh"]))
        paused = _gauge("workers_paused", "Fresh workers paused by a configuration error")
        paused.add_metric([], sum(1 for w in workers if w["fresh"] and w["state"] == "paused"))
        age = _gauge("worker_last_beat_age_seconds", "Seconds since the last beat", ["worker", "host", "state"])
        ops = CounterMetricFamily(
            PREFIX + "worker_operations",
            "Operations per outcome since the worker started",
            labels=["worker", "outcome"],
        )
        for worker in workers:
            age.add_metric([worker["name"], worker["host"], worker["state"]], worker["last_beat_age_seconds"])
            for outcome in OUTCOMES:
                ops.add_metric([worker["name"], outcome], worker[outcome])
        yield from (live, paused, age, ops)

    def _timing_families(self, workers: list[dict]):
        for field, (name, documentation) in TIMING_FIELDS.items():
            family = SummaryMetricFamily(PREFIX + name, documentation, labels=["worker"])
            for worker in workers:
                count, total = worker["extra"].get(f"{field}s"), worker["extra"].get(f"{field}_seconds_sum")
                if count is not None and total is not None:
                    family.add_metric([worker["name"]], count_value=float(count), sum_value=float(total))
            yield family
        rejects = CounterMetricFamily(
            PREFIX + "bitrix_rejects", "Portal answers refusing a request since the worker started", labels=["worker"]
        )
        for worker in workers:
            count = worker["extra"].get("bitrix_rejects")
            if count is not None:
                rejects.add_metric([worker["name"]], float(count))
        yield rejects

    def _window_families(self):
        totals: dict[tuple[str, str, str], int] = defaultdict(int)
        for row in telemetry.read_minutes(self.client, 60):
            for key, value in row["by_kind"].items():
                outcome, entity, op = key.split(":")
                totals[(outcome, entity, op)] += value
        family = _gauge(
            "operations_last_hour", "Operations per outcome over the last 60 minutes", ["outcome", "entity", "op"]
        )
        for labels, value in sorted(totals.items()):
            family.add_metric(list(labels), value)
        yield family

    def _contact_family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(
            PREFIX + "contacts", "Users' contacts by how they came to be (adopted or created)", labels=["outcome"]
        )
        for outcome, value in contact_counts.read(self.client).items():
            family.add_metric([outcome], value)
        return family

    def _mark_families(self):
        for which in ("success", "failure"):
            mark = telemetry.read_mark(self.client, which)
            family = _gauge(f"last_{which}_timestamp_seconds", f"Unix time of the last {which} (0: never)")
            family.add_metric([], mark["at"] if mark else 0)
            yield family


_STREAM_METRICS = {
    "length": "stream_length",
    "group_exists": "group_exists",
    "group_lag": "group_lag",
    "group_pending": "group_pending",
    "oldest_pending_age_seconds": "oldest_pending_age_seconds",
}
_HELP = {
    "length": "Entries in the stream (acknowledged ones stay until trimmed)",
    "group_exists": "1 when the bitrix_workers group exists on the stream",
    "group_lag": "Entries not yet delivered to any worker",
    "group_pending": "Entries delivered to a worker and not acknowledged",
    "oldest_pending_age_seconds": "Age of the oldest entry not yet acknowledged (0: none)",
}


def render_metrics() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SyncCollector(get_redis()))
    return generate_latest(registry)


def _same(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode(), expected.encode())


def metrics_access(request: HttpRequest) -> int | None:
    """``None`` when allowed, else the status to answer (401 or 403).

    Allowed: ``Bearer <BITRIX_METRICS_TOKEN>``, or a user with ``crmbridge.view_syncrecord``
    signed in by an API token (``Bearer``) or a session.
    """
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        expected = settings.BITRIX_METRICS_TOKEN
        if scheme.lower() == "bearer" and expected and _same(token.strip(), expected):
            return None
        user = _api_token_user(request)
        return None if can_view_sync(user) else 403
    user = request.user
    if not user.is_authenticated:
        return 401
    return None if can_view_sync(user) else 403


def _api_token_user(request: HttpRequest):
    """The user of an API token in the Authorization header, or None."""
    try:
        found = BearerTokenAuthentication().authenticate(request)
    except AuthenticationFailed:
        return None
    return found[0] if found else None


def _envelope(status: int, message: str) -> JsonResponse:
    """The operators' envelope, as the status endpoints answer."""
    return JsonResponse({"success": False, "message": message, "data": None}, status=status)


@csrf_exempt  # reads only; a POST is answered 405 in the envelope, not Django's CSRF page
def metrics_view(request: HttpRequest) -> HttpResponse:
    refusals = FailureThrottle("metrics_refused", client_address(request))
    counted = "Authorization" in request.headers  # token guesses count; a session or nothing does not
    wait = refusals.blocked_for() if counted else None
    if wait is not None:
        response = _envelope(429, "Too many refused tokens from this address. Try again later.")
        response["Retry-After"] = retry_after(wait)
        return response
    denied = metrics_access(request)
    if denied:
        response = _envelope(denied, "Authentication required." if denied == 401 else "You may not read the metrics.")
        if denied == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    refusals.forgive()  # allowed: not a refusal
    if request.method != "GET":
        response = _envelope(405, f"Method {request.method} is not allowed: GET /metrics.")
        response["Allow"] = "GET"
        return response
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)
