"""A Redis failure as a sentence an operator can act on, never with a secret."""

from __future__ import annotations

from django.conf import settings

from crmbridge.bitrix.webhook_url import redact


def redis_error_reason(exc: Exception) -> str:
    text = redact(str(exc)) or type(exc).__name__
    if settings.REDIS_PASSWORD:
        text = text.replace(settings.REDIS_PASSWORD, "****")
    return f"Redis is unreachable ({type(exc).__name__}: {text})"
