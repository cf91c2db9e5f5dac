"""Production safety of the settings: the secret key, the HTTPS switches, rate-limit values.

``SECRET_KEY`` decides (see ``secret_key``):

* set and strong: used as it is;
* set but one Django's deploy check calls insecure (security.W009: the
  ``django-insecure`` prefix, fewer than 50 characters or fewer than 5
  distinct ones), with ``DEBUG`` off: treated exactly like a missing key (the
  rules below), so production refuses the public development key copied from
  this repository, or a placeholder, with the same one-line error;
* unset with ``DEBUG=true``: a public development key (``./run.sh`` turns DEBUG on);
* unset under pytest (``PYTEST_VERSION``, set by pytest for its run and inherited
  by the processes a test starts): a tests-only key;
* unset with ``DJANGO_BUILD_STEP=collectstatic`` while running ``collectstatic``:
  a throwaway key, so an image build needs no secret (the Dockerfile does this);
  any other command still refuses;
* otherwise start-up stops with an error naming SECRET_KEY: production never runs
  on a key published in this repository.
"""

from __future__ import annotations

import os
import re
import sys

from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured

from bitrixsync.env_config import env_str

DEVELOPMENT_KEY = "django-insecure-dev-only-key-set-SECRET_KEY-in-production"
TESTS_KEY = "django-insecure-tests-only-key"
BUILD_KEY = "django-insecure-build-only-key-collectstatic"


def secret_key(key: str, *, debug: bool) -> str:
    """``key`` (the SECRET_KEY variable) or the fallback the rules above allow; else ImproperlyConfigured."""
    if key and (debug or not is_insecure(key)):
        return key
    if debug:
        return DEVELOPMENT_KEY
    if os.environ.get("PYTEST_VERSION"):
        return TESTS_KEY
    if env_str("DJANGO_BUILD_STEP", "") == "collectstatic" and sys.argv[1:2] == ["collectstatic"]:
        return BUILD_KEY
    problem = f"is insecure ({is_insecure(key)})" if key else "is not set"
    raise ImproperlyConfigured(
        f"SECRET_KEY {problem} and DEBUG is off: refusing to run on a public development key. "
        "Set SECRET_KEY (a long random string, e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))'), "
        "or DEBUG=true for development."
    )


def is_insecure(key: str) -> str:
    """Why Django's deploy check (security.W009) would call ``key`` insecure, or "" (never quotes the key)."""
    if key.startswith(SECRET_KEY_INSECURE_PREFIX):
        return f"it starts with {SECRET_KEY_INSECURE_PREFIX!r}"
    if len(key) < SECRET_KEY_MIN_LENGTH:
        return f"fewer than {SECRET_KEY_MIN_LENGTH} characters"
    if len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS:
        return f"fewer than {SECRET_KEY_MIN_UNIQUE_CHARACTERS} distinct characters"
    return ""


_RATE = re.compile(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)\Z")


def env_rate(name: str, default: str) -> str:
    """A DRF rate such as ``20/min`` from ``name``; a malformed one stops start-up (else: a 500 per request)."""
    value = env_str(name, default)
    if not _RATE.match(value):
        raise ImproperlyConfigured(f"{name} must be <count>/<second|minute|hour|day>, e.g. 20/min; got {value!r}")
    return value


def proxy_ssl_header(value: str) -> tuple[str, str] | None:
    """``SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO,https`` -> the tuple Django wants; empty -> None."""
    if not value.strip():
        return None
    header, _, expected = value.partition(",")
    if not header.strip().startswith("HTTP_") or not expected.strip():
        raise ImproperlyConfigured(
            "SECURE_PROXY_SSL_HEADER must be '<META name>,<value>', e.g. HTTP_X_FORWARDED_PROTO,https"
        )
    return header.strip(), expected.strip()
