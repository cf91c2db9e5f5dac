"""The one place that opens Redis connections.

Timeouts are short on purpose: a web request that publishes must not hang when
Redis is down (the outbox keeps the operation), and the worker retries with
backoff on its own.
"""

from __future__ import annotations

import threading

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

_lock = threading.Lock()
_clients: dict[tuple, redis.Redis] = {}


def get_redis(
    *, socket_timeout: float | None = None, connect_timeout: float | None = None, retries: bool = True,
    name: str = "bitrixsync",
) -> redis.Redis:  # fmt: skip
    """A shared client (connection pool) for ``settings.REDIS_URL``, decoding to str.

    ``socket_timeout`` overrides ``REDIS_SOCKET_TIMEOUT``: blocking reads pass a
    larger one so that ``XREADGROUP ... BLOCK`` is not cut short, the publisher
    a smaller one (with ``retries=False``) so that a request never waits long.
    """
    timeout = settings.REDIS_SOCKET_TIMEOUT if socket_timeout is None else socket_timeout
    connect = min(settings.REDIS_SOCKET_TIMEOUT, 5.0) if connect_timeout is None else connect_timeout
    key = (settings.REDIS_URL, timeout, connect, retries, name)
    with _lock:
        client = _clients.get(key)
        if client is None:
            extra = {} if retries else {"retry": Retry(NoBackoff(), 0)}
            client = redis.Redis.from_url(
                settings.REDIS_URL,
                decode_responses=True,
                # Stream entries are bytes anyone with XADD wrote: one that is not UTF-8
                # must become a dead letter, not a UnicodeDecodeError on every read.
                encoding_errors="backslashreplace",
                socket_timeout=timeout,
                socket_connect_timeout=connect,
                health_check_interval=30,
                client_name=name,
                **extra,
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
