"""Strict readers for environment variables.

django-environ parses the values; these wrappers make every bad value stop
start-up with ``ImproperlyConfigured`` naming the variable, because
``env.bool("BITRIX_ENABLED")`` alone turns ``maybe`` into ``False`` silently.
Secrets are never echoed back in the error.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

env = environ.Env()

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


def _raw(name: str) -> str | None:
    value = env.str(name, default=None)
    return None if value is None else value.strip()


def env_bool(name: str, default: bool) -> bool:
    raw = _raw(name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false (or 1/0, yes/no, on/off), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = _raw(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}") from None
    _check_range(name, value, minimum, maximum)
    return value


def env_float(name: str, default: float, *, minimum: float | None = None, maximum: float | None = None) -> float:
    raw = _raw(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    _check_range(name, value, minimum, maximum)
    return value


def _check_range(name: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, got {value}")


def env_str(name: str, default: str = "") -> str:
    raw = _raw(name)
    return default if raw is None else raw


def env_list(name: str, default: list[str]) -> list[str]:
    raw = _raw(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


# The expected forms, quoted in errors (never the value: URLs may hold a password).
_DATABASE_FORM = "postgres://user:password@host:5432/name or sqlite:////absolute/path/db.sqlite3"
_REDIS_FORM = "redis://[:password@]host:6379/0 (rediss:// for TLS, or unix:///path/redis.sock)"


def database_config(name: str, default: str) -> dict:
    raw = _raw(name) or default
    # django-environ passes an unknown scheme through as the ENGINE ("nonsense://"
    # becomes ENGINE "nonsense"), which fails later far from the variable's name.
    if urlsplit(raw).scheme not in environ.Env.DB_SCHEMES:
        raise ImproperlyConfigured(f"{name} has an unknown scheme: expected {_DATABASE_FORM}")
    try:
        return environ.Env.db_url_config(raw)
    except Exception:  # django-environ raises several types for a bad URL
        raise ImproperlyConfigured(f"{name} is not a valid database URL: expected {_DATABASE_FORM}") from None


def redis_url(*, host: str, port: int, password: str, url_name: str = "REDIS_URL") -> str:
    """The Redis URL to use: ``REDIS_URL`` if set, else built from host/port/password.

    ``REDIS_URL`` accepts ``redis://`` and ``rediss://`` (TLS) with an optional
    password and database number (``rediss://:pw@host:6380/2``).
    """
    raw = _raw(url_name)
    if not raw:
        auth = f":{password}@" if password else ""
        return f"redis://{auth}{host}:{port}/0"
    parts = urlsplit(raw)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ImproperlyConfigured(f"{url_name} has an unknown scheme: expected {_REDIS_FORM}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ImproperlyConfigured(f"{url_name} has an invalid port: expected {_REDIS_FORM}") from None
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise ImproperlyConfigured(f"{url_name} has an invalid database number: expected {_REDIS_FORM}")
    return raw


_SENTINELS_FORM = "host:port[,host:port...], e.g. sentinel-1:26379,sentinel-2:26379,sentinel-3:26379"


def redis_sentinels(name: str, *, master_name: str, master_variable: str) -> list[tuple[str, int]]:
    """``REDIS_SENTINELS`` as ``[(host, port), ...]``; empty when unset (one Redis at ``REDIS_URL``).

    Set together with the master's name or not at all: one without the other is
    a configuration error, never a silent fall-back to ``REDIS_URL``.
    """
    raw = _raw(name) or ""
    addresses = [_sentinel_address(name, item.strip()) for item in raw.split(",") if item.strip()]
    if addresses and not master_name:
        raise ImproperlyConfigured(f"{name} is set but {master_variable} is not: expected the master's name too")
    if master_name and not addresses:
        raise ImproperlyConfigured(f"{master_variable} is set but {name} is not: expected {_SENTINELS_FORM}")
    return addresses


def _sentinel_address(name: str, item: str) -> tuple[str, int]:
    host, sep, port = item.rpartition(":")
    host = host.strip("[]")  # [::1]:26379
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ImproperlyConfigured(f"{name} has an invalid address {item!r}: expected {_SENTINELS_FORM}")
    return host, int(port)


def env_subset(name: str, default: str, allowed: tuple[str, ...], *, none: str = "off") -> tuple[str, ...]:
    """``"email,phone"`` -> ``("email", "phone")`` in the order of ``allowed``; ``none`` -> ``()``.

    Words are case-insensitive; an unknown word, a repeat or ``none`` mixed with
    others stops start-up naming the variable.
    """
    raw = _raw(name)
    words = [w.strip().lower() for w in (default if raw is None else raw).split(",") if w.strip()]
    if words == [none]:
        return ()
    if not words or len(set(words)) != len(words) or not set(words) <= set(allowed):
        choices = ", ".join([",".join(allowed), *allowed, none])
        raise ImproperlyConfigured(f"{name} must be one of {choices}, got {raw!r}")
    return tuple(word for word in allowed if word in words)
