"""The one place that opens Redis connections: every client of the project comes from ``get_redis``.

Timeouts are short on purpose: a web request that publishes must not hang when
Redis is down (the outbox keeps the operation), and the worker retries with
backoff on its own.

Two topologies, chosen by settings:

* **single Redis** at ``REDIS_URL`` (or ``REDIS_HOST``/``REDIS_PORT``/``REDIS_PASSWORD``);
* **Sentinel**: with ``REDIS_SENTINELS`` and ``REDIS_SENTINEL_MASTER`` set, clients are
  ``redis.sentinel.Sentinel(...).master_for(REDIS_SENTINEL_MASTER)``: every new
  connection asks the sentinels where the master is now. ``REDIS_URL`` then gives
  only the data nodes' password (``REDIS_PASSWORD``), database number and TLS
  (``rediss://``); its host and port are not used. The sentinels are reached
  without TLS, with ``REDIS_SENTINEL_PASSWORD`` if they require one.

After a failover a connection can be left talking to the old master, now a
replica: every write answers ``READONLY``, and a blocked ``XREADGROUP`` is
woken with ``UNBLOCKED ... (master -> replica?)``. Both close that connection
and raise ``redis.ConnectionError`` (redis-py's ``SentinelManagedConnection``
does this for ``READONLY``; ``_FailoverAware`` adds ``UNBLOCKED``, and does the
same for a single Redis whose DNS name moved to a new primary). Callers already
treat ``ConnectionError`` as "Redis away, try again": the client's retry (or the
caller's next attempt) opens a new connection, which resolves the master again
(``_ResolveOnReconnect``: also when redis-py reconnects inside a retry), and the
Sentinel pool then drops its other idle connections to the old address.

Sentinel itself kills the client connections of a master it demotes; the cases
above are those where a connection survives that (a TCP load balancer that
dials the same server again, an operator's ``REPLICAOF``, a DNS name moved).

Passwords go to redis-py as a ``credential_provider`` (``HiddenCredentials``),
never as ``password=``: redis-py 6.4 prints a client's connection options,
password included, in its ``repr``, and ``MasterNotFoundError`` quotes the
``repr`` of every sentinel it could not reach, so each "Redis unreachable" line
of the worker, the status endpoint, the dashboard and ``bitrix_doctor`` showed
``REDIS_SENTINEL_PASSWORD`` while the sentinels were down (found in review).
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import redis
from django.conf import settings
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.credentials import UsernamePasswordCredentialProvider
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelManagedConnection, SentinelManagedSSLConnection

_lock = threading.Lock()
_clients: dict[tuple, redis.Redis] = {}

# The reply a blocked command gets when its server turns into a replica (Redis 7).
_DEMOTED = "UNBLOCKED force unblock from blocking operation, instance state changed"


class _FailoverAware:
    """Connection mixin: an answer meaning "this server is a replica now" closes the connection.

    The caller sees ``redis.ConnectionError`` (retried like a lost connection), and
    the next connection resolves the master again instead of sticking to this one.
    """

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except redis.ReadOnlyError as exc:
            self.disconnect()
            raise redis.ConnectionError("Redis answered READONLY: this server is a replica now") from exc
        except redis.ResponseError as exc:
            if not str(exc).startswith(_DEMOTED):
                raise
            self.disconnect()
            raise redis.ConnectionError("Redis turned into a replica during a blocking read") from exc


class FailoverAwareConnection(_FailoverAware, redis.Connection):
    pass


class FailoverAwareSSLConnection(_FailoverAware, redis.SSLConnection):
    pass


class _ResolveOnReconnect:
    """Sentinel connection mixin: every reconnection asks the sentinels where the master is.

    redis-py 6.4 resolves the master in ``SentinelManagedConnection.connect``, but a
    command retried after a connection error reconnects through
    ``connect_check_health``, which dials the stored host and port: the old
    master. After a graceful failover that server is a replica and answers,
    so retried reads were served stale data and retried writes met READONLY
    again until the retries ran out (tests/scale/test_sentinel_clients.py).
    """

    _resolving = False

    def connect_to(self, address: tuple[str, int]) -> None:
        self._resolving = True  # the address is fresh: no second question to the sentinels
        try:
            super().connect_to(address)
        finally:
            self._resolving = False

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        if not self._sock and not self._resolving and self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        super().connect_check_health(check_health=check_health, retry_socket_connect=retry_socket_connect)


class FailoverAwareSentinelConnection(_FailoverAware, _ResolveOnReconnect, SentinelManagedConnection):
    pass


class FailoverAwareSentinelSSLConnection(_FailoverAware, _ResolveOnReconnect, SentinelManagedSSLConnection):
    pass


class SentinelsUnreachable(MasterNotFoundError):
    """Not one sentinel answered: asking again within the same command cannot help.

    A ``MasterNotFoundError`` is a ``ConnectionError``, which the client retries with
    backoff (about 6 s): right during a failover, when the sentinels answer but have no
    master yet, wrong when none answers at all -- then every web request that touches
    Redis (a sign-in's rate limit, a status page) waited those seconds. This one is
    raised at once (``FastFailRetry``); callers still catch it as ``ConnectionError``.
    """


class _Sentinel(Sentinel):
    def discover_master(self, service_name: str) -> tuple[str, int]:
        """redis-py's, but ``SentinelsUnreachable`` when every sentinel failed to answer."""
        unreachable = 0
        for index, sentinel in enumerate(self.sentinels):
            try:
                masters = sentinel.sentinel_masters()
            except (redis.ConnectionError, redis.TimeoutError):
                unreachable += 1
                continue
            state = masters.get(service_name)
            if state and self.check_master_state(state, service_name):
                self.sentinels[0], self.sentinels[index] = sentinel, self.sentinels[0]  # ask it first next time
                forced = self._force_master_ip
                return (state["ip"] if forced is None else forced), state["port"]
        if unreachable == len(self.sentinels):
            raise SentinelsUnreachable(f"No master found for {service_name!r}: no sentinel answers")
        raise MasterNotFoundError(f"No master found for {service_name!r}")


class _Unretried(Exception):
    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class FastFailRetry(Retry):
    """redis-py's ``Retry``, except that ``SentinelsUnreachable`` is raised at once."""

    def call_with_retry(self, do: Any, fail: Any) -> Any:
        def attempt() -> Any:
            try:
                return do()
            except SentinelsUnreachable as error:
                raise _Unretried(error) from None

        try:
            return super().call_with_retry(attempt, fail)
        except _Unretried as wrapped:
            fail(wrapped.error)  # what redis-py does with a failed attempt: drop the connection
            raise wrapped.error from None


class HiddenCredentials(UsernamePasswordCredentialProvider):
    """A username and password for redis-py that its ``repr`` (and so its error messages) never shows."""

    def __repr__(self) -> str:
        return "HiddenCredentials(****)"


def credentials(username: str | None, password: str | None) -> dict[str, Any]:
    """Client options that authenticate as ``username``/``password``: none when there is no password."""
    if not password:
        return {}
    return {"credential_provider": HiddenCredentials(username=username or None, password=password)}


def without_credentials(url: str) -> tuple[str, dict[str, Any]]:
    """``url`` without its user and password, and the client options that carry them instead."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url, {}
    host = parts.netloc.rpartition("@")[2]
    bare = urlunsplit(parts._replace(netloc=host))
    username = unquote(parts.username) if parts.username else None
    return bare, credentials(username, unquote(parts.password) if parts.password else None)


def sentinel_configured() -> bool:
    return bool(settings.REDIS_SENTINELS and settings.REDIS_SENTINEL_MASTER)


def get_redis(
    *, socket_timeout: float | None = None, connect_timeout: float | None = None, retries: bool = True,
    name: str = "bitrixsync",
) -> redis.Redis:  # fmt: skip
    """A shared client (connection pool) for the configured Redis, decoding to str.

    ``socket_timeout`` overrides ``REDIS_SOCKET_TIMEOUT``: blocking reads pass a
    larger one so that ``XREADGROUP ... BLOCK`` is not cut short, the publisher
    a smaller one (with ``retries=False``) so that a request never waits long.
    """
    timeout = settings.REDIS_SOCKET_TIMEOUT if socket_timeout is None else socket_timeout
    connect = min(settings.REDIS_SOCKET_TIMEOUT, 5.0) if connect_timeout is None else connect_timeout
    key = (_topology_key(), timeout, connect, retries, name)
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _new_client(timeout=timeout, connect=connect, retries=retries, name=name)
            _clients[key] = client
    return client


def _topology_key() -> tuple:
    """What the cached clients depend on (tests change these settings)."""
    sentinels = tuple(settings.REDIS_SENTINELS) if sentinel_configured() else ()
    return (settings.REDIS_URL, sentinels, settings.REDIS_SENTINEL_MASTER, settings.REDIS_SENTINEL_PASSWORD)


def _new_client(*, timeout: float, connect: float, retries: bool, name: str) -> redis.Redis:
    options: dict[str, Any] = {
        "decode_responses": True,
        # Stream entries are bytes anyone with XADD wrote: one that is not UTF-8
        # must become a dead letter, not a UnicodeDecodeError on every read.
        "encoding_errors": "backslashreplace",
        "socket_timeout": timeout,
        "socket_connect_timeout": connect,
        "health_check_interval": 30,
        "client_name": name,
    }
    # Given explicitly: redis-py applies its default (3 retries) to ``Redis(...)``/``from_url`` but not to
    # a pool built by ``Sentinel.master_for``, whose connections would otherwise never retry.
    options["retry"] = (
        FastFailRetry(ExponentialWithJitterBackoff(base=1, cap=10), 3) if retries else Retry(NoBackoff(), 0)
    )
    if sentinel_configured():
        return _sentinel_client(options, connect=connect)
    scheme = urlsplit(settings.REDIS_URL).scheme
    if scheme in ("redis", "rediss"):  # a unix socket keeps redis-py's own class
        options["connection_class"] = FailoverAwareSSLConnection if scheme == "rediss" else FailoverAwareConnection
    url, secret = without_credentials(settings.REDIS_URL)
    return redis.Redis.from_url(url, **options, **secret)


def _sentinel_client(options: dict[str, Any], *, connect: float) -> redis.Redis:
    sentinel = _Sentinel(settings.REDIS_SENTINELS, sentinel_kwargs=sentinel_options(connect))
    _, secret = without_credentials(settings.REDIS_URL)  # only its password, db and TLS count with Sentinel
    tls = urlsplit(settings.REDIS_URL).scheme == "rediss"
    return sentinel.master_for(
        settings.REDIS_SENTINEL_MASTER,
        redis_class=redis.Redis,
        connection_class=FailoverAwareSentinelSSLConnection if tls else FailoverAwareSentinelConnection,
        db=database_number(settings.REDIS_URL),
        **secret,
        **options,
    )


def sentinel_options(timeout: float) -> dict[str, Any]:
    """Connection options for talking to the sentinels themselves.

    Short, and no retries: a hung sentinel costs one timeout before the next one is
    asked, not redis-py's default three retries with backoff (seconds, in a sign-in's
    rate-limit check).
    """
    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout, "decode_responses": True,
                               "retry": Retry(NoBackoff(), 0)}  # fmt: skip
    return {**options, **credentials(None, settings.REDIS_SENTINEL_PASSWORD)}


def sentinel_client(host: str, port: int, *, timeout: float) -> redis.Redis:
    """A client of one sentinel (not of the data): for diagnostics that ask the sentinels themselves."""
    return redis.Redis(host=host, port=port, **sentinel_options(timeout))


def reset_clients() -> None:
    """Drop cached clients (tests change REDIS_URL; a forked process must not share sockets)."""
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


def describe_redis() -> dict:
    """Host, port, db and TLS of the configured Redis, from an allow-list: never the password.

    With Sentinel, host and port are those of the first sentinel (the master's
    address is in ``redis_io.topology.redis_topology()``, which asks them).
    """
    parts = urlsplit(settings.REDIS_URL)
    host, port = parts.hostname, parts.port or 6379
    if sentinel_configured():
        host, port = settings.REDIS_SENTINELS[0]
    return {
        "host": host,
        "port": port,
        "db": database_number(settings.REDIS_URL),
        "tls": parts.scheme == "rediss",
        "password_set": bool(parts.password),
    }


def database_number(url: str) -> int:
    """The database of a ``redis://``/``rediss://`` URL (its path) or a ``unix://`` one (``?db=``)."""
    parts = urlsplit(url)
    value = parse_qs(parts.query).get("db", ["0"])[0] if parts.scheme == "unix" else parts.path.lstrip("/")
    return int(value) if value.isdigit() else 0
