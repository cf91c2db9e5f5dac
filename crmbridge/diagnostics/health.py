"""``GET /healthz`` and ``GET /readyz``: probes for Compose, Kubernetes and load balancers.

Both are unauthenticated, never throttled, and answer small JSON with no
secrets (no URLs, host names or exception messages: a failed check is named by
what failed and the exception's class).

* ``/healthz`` (liveness): the process answers requests. It touches nothing --
  no database, no Redis -- so an outage of either never gets the web
  processes restarted (a restart would not fix it). Always 200
  ``{"status": "ok"}``.
* ``/readyz`` (readiness): this process can serve: the database answers
  ``SELECT 1``, Redis answers ``PING``, and every migration on disk is applied
  (a pod of a new release waits for the migration Job). 200
  ``{"status": "ready", "checks": {...}}``; otherwise 503
  ``{"status": "not ready", "checks": {...}}`` where each failed check says why
  (``"unreachable: ConnectionError"``, ``"2 unapplied"``). Redis down makes the
  web app not ready although orders would still be accepted (the outbox keeps
  them): the probe is about the whole service working, and Kubernetes keeps
  not-ready pods that already run -- only new rollouts wait.

Behind ``SECURE_SSL_REDIRECT`` a probe must say it came through HTTPS
(``X-Forwarded-Proto: https``) and use an allowed host, as the Compose health check
and ``deploy/k8s`` probes do.
"""

from __future__ import annotations

import redis
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from crmbridge.redis_io.connection import get_redis

OK = "ok"
# A probe answers within the probe's timeout even when Redis hangs.
REDIS_TIMEOUT_SECONDS = 2.0


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": database_check(), "redis": redis_check()}
    checks["migrations"] = migrations_check() if checks["database"] == OK else "not checked: no database"
    ready = all(value == OK for value in checks.values())
    return JsonResponse({"status": "ready" if ready else "not ready", "checks": checks}, status=200 if ready else 503)


def database_check() -> str:
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means not ready; the class names it without details
        return f"unreachable: {type(exc).__name__}"
    return OK


def redis_check() -> str:
    client = get_redis(socket_timeout=REDIS_TIMEOUT_SECONDS, connect_timeout=REDIS_TIMEOUT_SECONDS, retries=False)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"unreachable: {type(exc).__name__}"
    return OK


def migrations_check() -> str:
    """``ok`` when every migration on disk is applied, else how many are not."""
    connection = connections[DEFAULT_DB_ALIAS]
    try:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        return f"unknown: {type(exc).__name__}"
    return OK if not plan else f"{len(plan)} unapplied"
