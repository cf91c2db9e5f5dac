"""Times as diagnostics show them: ISO 8601 in UTC."""

from __future__ import annotations

from datetime import UTC, datetime

import redis

from crmbridge.bitrix.webhook_url import redact
from crmbridge.redis_io import telemetry


def iso_or_none(unix_seconds: float | None) -> str | None:
    if unix_seconds is None:
        return None
    return datetime.fromtimestamp(unix_seconds, tz=UTC).isoformat(timespec="milliseconds")


def read_mark(client: redis.Redis, which: str) -> dict | None:
    """``{"at": ISO time, "at_unix": float, "detail": str}`` of the last success or failure."""
    mark = telemetry.read_mark(client, which)
    if mark is None:
        return None
    return {"at": iso_or_none(mark["at"]), "at_unix": mark["at"], "detail": redact(mark["detail"])}


def read_marks(client: redis.Redis) -> dict:
    """``last_success`` and ``last_failure`` (each ``None`` when never recorded)."""
    return {"last_success": read_mark(client, "success"), "last_failure": read_mark(client, "failure")}
