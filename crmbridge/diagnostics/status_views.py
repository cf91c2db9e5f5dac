"""``GET /bitrix/sync/worker/status`` and ``GET /bitrix/sync/status`` (admin only).

The answer is the specification's envelope ``{"success", "message", "data"}``.
When Redis is down the answer is still 200, with ``success: false``, the
reason in ``message`` and the same ``data`` keys (what needs Redis is null):
a monitoring probe reads a clear answer instead of a 500 page.

A stream key holding another type (``SET bitrix:webhooks x``) is not "Redis is
unreachable": the answer stays ``success: true`` with every fact Redis can give,
``data.key_problems`` names each such key, its type and the fix, and
``message`` names the keys too.

Access follows the model permission ``crmbridge.view_syncrecord`` (superusers
have it; ``is_staff`` alone does not, as in the admin). Anonymous requests get
401 (with ``WWW-Authenticate: Bearer``), signed-in users without the permission
403; both, like a 429, in the envelope: ``{"success": false, "message": ..., "data": null}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import BearerTokenAuthentication
from crmbridge.diagnostics.redis_errors import redis_error_reason
from crmbridge.diagnostics.serializers import SyncStatusResponseSerializer, WorkerStatusResponseSerializer
from crmbridge.diagnostics.sync_status import sync_status, sync_status_without_redis
from crmbridge.diagnostics.worker_status import worker_status, worker_status_without_redis
from crmbridge.redis_io.connection import get_redis

logger = logging.getLogger(__name__)


class CanViewSync(BasePermission):
    """The operators' read permission on the sync (the admin's "Can view sync record")."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        return can_view_sync(request.user)


def can_view_sync(user) -> bool:
    return bool(user and user.is_active and user.has_perm("crmbridge.view_syncrecord"))


class DiagnosticsView(APIView):
    # Bearer first: its authenticate_header makes DRF answer 401, not 403, to anonymous requests.
    authentication_classes = [BearerTokenAuthentication, SessionAuthentication]
    permission_classes = [CanViewSync]

    success_message = ""
    serializer_class = None

    # The subclass's selectors: ``build(client)`` reads Redis; ``build_without_redis()`` answers when it cannot.
    build: Callable[[redis.Redis], dict]
    build_without_redis: Callable[[], dict]

    def handle_exception(self, exc: Exception) -> Response:
        """Refusals (401, 403, 429) in the specification's envelope, headers kept."""
        response = super().handle_exception(exc)
        if response.status_code in (401, 403, 429):
            detail = response.data.get("detail", "") if isinstance(response.data, dict) else ""
            response.data = {"success": False, "message": str(detail) or response.status_text, "data": None}
        return response

    def get(self, request: Request) -> Response:
        try:
            data = self.build(get_redis())
            body = {"success": True, "message": _with_key_problems(self.success_message, data), "data": data}
        except redis.RedisError as exc:
            reason = redis_error_reason(exc)
            logger.warning("[STATUS] %s", reason)
            body = {"success": False, "message": reason, "data": self.build_without_redis()}
        return Response(self.serializer_class(body).data)


def _with_key_problems(message: str, data: dict) -> str:
    """A key of the wrong type is named in the message too: a probe that reads only that sees it."""
    problems = data.get("key_problems") or []
    if not problems:
        return message
    named = "; ".join(f"{p['key']} is a {p['type']}, not a {p['expected']}" for p in problems)
    return f"{message}; Redis key(s) of the wrong type: {named} (see data.key_problems for the fix)"


@extend_schema_view(get=extend_schema(responses=WorkerStatusResponseSerializer, summary="Worker status (admin only)"))
class WorkerStatusView(DiagnosticsView):
    """Is a worker alive, what is it doing, and how much is left to do."""

    success_message = "Worker status retrieved"
    serializer_class = WorkerStatusResponseSerializer
    build = staticmethod(worker_status)
    build_without_redis = staticmethod(worker_status_without_redis)


@extend_schema_view(get=extend_schema(responses=SyncStatusResponseSerializer, summary="Queue status (admin only)"))
class SyncStatusView(DiagnosticsView):
    """The streams, the backlog, dead letters and the outbox."""

    success_message = "Sync status retrieved"
    serializer_class = SyncStatusResponseSerializer
    build = staticmethod(sync_status)
    build_without_redis = staticmethod(sync_status_without_redis)
