"""Error reports (the DEBUG technical 500 page, e-mailed reports) without a single secret.

Django's ``SafeExceptionReporterFilter`` hides settings and ``request.META``
entries whose *name* looks secret (KEY, TOKEN, PASS...). Ours are also named
WEBHOOK, CODE, REDIS_URL, DATABASE_URL; and a secret can sit inside another
value (the Redis password inside a URL, the webhook code inside a local
variable or an exception message). So this filter hides by name *and* by value:

* names: Django's list plus WEBHOOK, CODE, REDIS, DATABASE, DSN;
* values: every known secret (``secret_values()``) found in any setting, META
  entry or frame variable replaces that whole value; and the final page is
  scrubbed once more by ``SecretsExceptionReporter`` (exception messages too).

runserver puts the whole process environment into ``request.META``, which is
why the environment variables are covered by the same rules.
"""

from __future__ import annotations

import html
import os
import re
from urllib.parse import urlsplit

from django.conf import settings
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

from crmbridge.bitrix.webhook_url import redact_url

# The settings and environment variables whose values are secret.
SECRET_NAMES = (
    "SECRET_KEY",
    "BITRIX_WEBHOOK_URL",
    "BITRIX_SANDBOX_CODE",
    "BITRIX_INBOUND_TOKEN",
    "BITRIX_METRICS_TOKEN",
    "REDIS_PASSWORD",
    "REDIS_SENTINEL_PASSWORD",
    "REDIS_URL",
    "DATABASE_URL",
    "POSTGRES_PASSWORD",
    "DEV_ADMIN_PASSWORD",
)
_MIN_SECRET_LENGTH = 4


def secret_values() -> set[str]:
    """Every secret value known from settings and the environment (URLs: also their password part)."""
    found: set[str] = set()
    for name in SECRET_NAMES:
        for value in (getattr(settings, name, ""), os.environ.get(name, "")):
            if isinstance(value, str) and value:
                found.add(value)
                found.update(_url_secrets(value))
    found.add(str(settings.DATABASES.get("default", {}).get("PASSWORD") or ""))
    return {value for value in found if len(value) >= _MIN_SECRET_LENGTH}


def _url_secrets(value: str) -> set[str]:
    try:
        parts = urlsplit(value)
        password = parts.password or ""
    except ValueError:
        return set()
    codes = re.findall(r"/rest/\d+/([^/\s?#]+)", value)
    return {password, *codes}


def scrub(text: str, secrets: set[str] | None = None) -> str:
    """``text`` with every secret (and its HTML-escaped form) and every webhook code replaced."""
    for secret in sorted(secrets if secrets is not None else secret_values(), key=len, reverse=True):
        text = text.replace(secret, SecretsReporterFilter.cleansed_substitute)
        text = text.replace(html.escape(secret), SecretsReporterFilter.cleansed_substitute)
    return redact_url(text)


class SecretsReporterFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|WEBHOOK|CODE|REDIS|DATABASE|DSN", flags=re.I
    )

    def cleanse_setting(self, key, value):
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str) and _contains_secret(cleansed):
            return self.cleansed_substitute
        return cleansed

    def get_traceback_frame_variables(self, request, tb_frame):
        variables = []
        for name, value in super().get_traceback_frame_variables(request, tb_frame):
            if self.hidden_settings.search(str(name)) or _contains_secret(_safe_repr(value)):
                value = self.cleansed_substitute
            variables.append((name, value))
        return variables


class SecretsExceptionReporter(ExceptionReporter):
    """The report, scrubbed of secret values as a last step (the exception message included)."""

    def get_traceback_html(self):
        return scrub(str(super().get_traceback_html()))

    def get_traceback_text(self):
        return scrub(str(super().get_traceback_text()))


def _contains_secret(text: str) -> bool:
    return any(secret in text for secret in secret_values()) or redact_url(text) != text


def _safe_repr(value: object) -> str:
    try:
        return repr(value)[:100_000]
    except Exception:  # a broken __repr__ must not break the error page
        return ""
