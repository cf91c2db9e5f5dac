"""Configuration as diagnostics show it: flags, the worker's knobs, and the
Bitrix webhook with its secret code replaced by ``****``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from crmbridge.bitrix.webhook_url import parse_webhook_url, redact_url
from crmbridge.redis_io import streams
from crmbridge.redis_io.connection import describe_redis
from crmbridge.redis_io.topology import redis_topology
from crmbridge.worker.config import spec_worker_config


def worker_config() -> dict:
    """The specification's ``worker_config`` from settings: ``max_retries``, ``batch_size``, ``poll_interval``."""
    return spec_worker_config(settings.BITRIX_WORKER)


def full_worker_config() -> dict:
    """Every worker setting (for the dashboard), plus stream retention."""
    return {**settings.BITRIX_WORKER, "stream_retention_seconds": settings.BITRIX_STREAM_RETENTION_SECONDS}


def heartbeat_interval() -> float:
    return float(settings.BITRIX_WORKER.get("heartbeat_seconds", 5.0))


def bitrix_configured() -> bool:
    """True when the integration is on and a webhook URL is set (its shape is checked at start-up)."""
    return bool(settings.BITRIX_ENABLED and settings.BITRIX_WEBHOOK_URL)


def redacted_webhook_url() -> str:
    """The webhook URL as ``https://portal/rest/1/****/``, or ``""`` when unset."""
    return redact_url(settings.BITRIX_WEBHOOK_URL or "")


def webhook_problem() -> str | None:
    """Why the webhook URL is unusable (never quoting it), or ``None`` when it looks right."""
    url = settings.BITRIX_WEBHOOK_URL or ""
    if not url:
        return "BITRIX_WEBHOOK_URL is not set"
    try:
        parse_webhook_url(url)
    except ImproperlyConfigured as exc:
        return str(exc)
    return None


def portal_url() -> str:
    """The portal's address for links to records: ``BITRIX_PORTAL_URL``, else the webhook's host."""
    if settings.BITRIX_PORTAL_URL:
        return settings.BITRIX_PORTAL_URL.rstrip("/")
    if webhook_problem() is None:
        return parse_webhook_url(settings.BITRIX_WEBHOOK_URL).portal
    return ""


def bitrix_config() -> dict:
    """The Bitrix settings safe to show to staff (no secret: the code and tokens are never included)."""
    return {
        "enabled": bool(settings.BITRIX_ENABLED),
        "worker_enabled": bool(settings.BITRIX_WORKER_ENABLED),
        "configured": bitrix_configured(),
        "webhook_url": redacted_webhook_url(),
        "portal_url": portal_url(),
        "originator_id": settings.BITRIX_ORIGINATOR_ID,
        "rate_limit_per_second": settings.BITRIX_RATE_LIMIT_PER_SECOND,
        "rate_limit_burst": settings.BITRIX_RATE_LIMIT_BURST,
        "inbound_token_set": bool(settings.BITRIX_INBOUND_TOKEN),
        "metrics_token_set": bool(settings.BITRIX_METRICS_TOKEN),
    }


def redis_config() -> dict:
    """Where Redis is (allow-listed: never a password), the key prefix and the ``topology``.

    With Sentinel, ``host`` and ``port`` are the master's as the sentinels report it
    (the first sentinel's while none answers); ``topology`` has the whole picture.
    """
    topology = redis_topology()
    where = {**describe_redis(), "prefix": streams.prefix(), "topology": topology}
    if topology["mode"] == "sentinel" and topology["master"]:
        host, _, port = topology["master"].rpartition(":")
        where.update(host=host, port=int(port))
    return where


def redis_target(where: dict) -> str:
    """``host:port/db``, or with Sentinel ``master 'name' at host:port/db (Sentinel)``, for messages."""
    address = f"{where['host']}:{where['port']}/{where['db']}"
    topology = where.get("topology") or {}
    if topology.get("mode") != "sentinel":
        return address
    if not topology.get("master"):
        return f"master {topology['master_name']!r} (Sentinel: no sentinel answers)"
    return f"master {topology['master_name']!r} at {address} (Sentinel)"
