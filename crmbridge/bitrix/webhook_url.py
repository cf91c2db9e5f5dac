"""The webhook URL: validation at start-up and redaction wherever it is shown.

An incoming-webhook URL (``https://<portal>/rest/<user>/<code>/``) carries a
password: the code. It is validated once, never echoed in an error, and shown
only as ``https://<portal>/rest/<user>/****/``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_PATH = re.compile(r"^/(?P<prefix>(?:[^/]+/)*?)rest/(?P<user>\d+)/(?P<code>[A-Za-z0-9_\-]+)/?$")
_KNOWN_SECRETS: set[str] = set()


@dataclass(frozen=True)
class WebhookUrl:
    """A parsed webhook URL. ``repr()`` never shows the code."""

    base: str  # scheme://host[:port][/prefix]/rest/<user>/<code>/
    portal: str  # scheme://host[:port]
    user_id: str
    code: str

    def __repr__(self) -> str:
        return f"WebhookUrl({self.redacted!r})"

    __str__ = __repr__

    @property
    def redacted(self) -> str:
        return redact_url(self.base)


def parse_webhook_url(url: str, *, name: str = "BITRIX_WEBHOOK_URL") -> WebhookUrl:
    """Parse ``url``; raise ``ImproperlyConfigured`` naming ``name`` (not the secret)."""
    problem = "must look like https://<portal>/rest/<user id>/<webhook code>/"
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ImproperlyConfigured(f"{name} {problem}") from None
    match = _PATH.match(parts.path)
    if parts.scheme not in ("http", "https") or not parts.hostname or not match or parts.query:
        raise ImproperlyConfigured(f"{name} {problem}")
    portal = f"{parts.scheme}://{parts.netloc}"
    base = f"{portal}/{match['prefix']}rest/{match['user']}/{match['code']}/"
    remember_secret(match["code"])
    return WebhookUrl(base=base, portal=portal, user_id=match["user"], code=match["code"])


def validate_webhook_url(url: str, *, name: str = "BITRIX_WEBHOOK_URL") -> str:
    """Return ``url`` (normalised, trailing slash) or ``""`` when unset."""
    if not url:
        return ""
    return parse_webhook_url(url, name=name).base


_REST_SEGMENT = re.compile(r"(/rest/\d+/)([^/\s\"'?#]+)")


def redact_url(text: str) -> str:
    """Replace the code of every ``/rest/<user>/<code>`` in ``text`` by ``****``."""
    return _REST_SEGMENT.sub(r"\1****", text)


def remember_secret(secret: str) -> None:
    """Register a secret that the logging filter must never let through."""
    if secret and len(secret) >= 4:
        _KNOWN_SECRETS.add(secret)


def redact(text: str) -> str:
    """Redact webhook URLs and every remembered secret from ``text``."""
    text = redact_url(text)
    for secret in _KNOWN_SECRETS:
        if secret in text:
            text = text.replace(secret, "****")
    return text


class RedactSecretsFilter(logging.Filter):
    """Logging filter: a last line of defence, the code paths redact already."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            # Format the traceback now, redacted, so the raw one is never printed.
            formatted = logging.Formatter().formatException(record.exc_info)
            cleaned = f"{cleaned}\n{redact(formatted)}"
            record.exc_info = None
            record.exc_text = None
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True
