"""The one place that opens Redis connections.

Timeouts are short on purpose: a web request that publishes must not hang when
Redis is down (the outbox keeps the operation), and the worker retries with
backoff on its own.
"""

from __future__ import annotations

import threading

import redis
from django.conf import settings

_lock = threading.Lock()
_clients: dict[tuple[str, float | None], redis.Redis] = {}


def get_redis(*, socket_timeout: float | None = None) -> redis.Redis:
    """A shared client (connection pool) for ``settings.REDIS_URL``, decoding to str.

    ``socket_timeout`` overrides ``REDIS_SOCKET_TIMEOUT``; blocking reads pass a
    larger one so that ``XREADGROUP ... BLOCK`` is not cut short.
    """
    timeout = settings.REDIS_SOCKET_TIMEOUT if socket_timeout is None else socket_timeout
    key = (settings.REDIS_URL, timeout)
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = redis.Redis.from_url(
                    settings.REDIS_URL,
                    decode_responses=True,
                    socket_timeout=timeout,
                    socket_connect_timeout=min(settings.REDIS_SOCKET_TIMEOUT, 5.0),
                    health_check_interval=30,
                    client_name="bitrixsync",
                )
                _clients[key] = client
    return client


def reset_clients() -> None:
    """Drop cached clients (tests change REDIS_URL; a forked process must not share sockets)."""
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


def describe_redis() -> dict:
    """Host, port, db and TLS of the configured Redis, from an allow-list: never the password."""
    from urllib.parse import urlsplit

    parts = urlsplit(settings.REDIS_URL)
    return {
        "host": parts.hostname,
        "port": parts.port or 6379,
        "db": int(parts.path.lstrip("/") or 0),
        "tls": parts.scheme == "rediss",
        "password_set": bool(parts.password),
    }
