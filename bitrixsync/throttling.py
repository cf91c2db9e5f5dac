"""Rate limits: DRF throttles whose counters live in Redis (``REDIS_URL``), shared by every process.

Scopes and their settings (``THROTTLE_RATES``, env ``THROTTLE_*_RATE``):

==================  ===============================================  ==========================
scope               counts                                           where
==================  ===============================================  ==========================
``login``           every ``POST /auth/token`` per client address    ``accounts.views.TokenApi``
``login_failures``  failed sign-ins per account (any address)        ``accounts.views.TokenApi``,
                                                                     ``/admin/login/``'s form
``register``        every ``POST /auth/register`` per address        ``accounts.views.RegisterApi``
``webhook_refused`` refused ``auth[application_token]`` per address  ``crmbridge.inbound.views``
``admin_login``     every ``POST /admin/login/`` per address         ``AdminLoginThrottleMiddleware``
``metrics_refused`` refused ``/metrics`` tokens per address          ``crmbridge.diagnostics.metrics``
==================  ===============================================  ==========================

Over the limit: 429 with ``Retry-After`` (seconds). The client address of every
per-address limit comes from one function, ``bitrixsync.client_address``:
``REMOTE_ADDR``, or with ``THROTTLE_NUM_PROXIES=n`` the n-th address from the
right of ``X-Forwarded-For``. DRF's own ``get_ident`` is not used: with
``NUM_PROXIES`` unset it takes the header as the client sent it.

Redis down: the limits **fail open** (the request is served, a warning is
logged), never a 500: sign-in must not depend on the rate limiter's store,
and the worker's own Redis alarms already tell the operator.

Exact under concurrency: each counter is a sliding window, a sorted set
``bitrixsync:throttle:<scope>:<ident>`` of attempts scored by Redis' own clock
(milliseconds; one clock for every web host). One Lua script per check drops
the entries older than the window, counts the rest and adds this attempt only
when under the limit, all atomically: of N parallel requests exactly the limit
passes, whatever N (tests/security/test_throttling_concurrency.py). A refused
attempt is not added, so hammering does not extend the wait. ``Retry-After``
is when enough of the oldest entries leave the window (also right after a rate
was lowered and more entries than the new limit are stored).

Failure counters (``FailureThrottle``: failed sign-ins per account, refused
webhook tokens, admin sign-ins) **reserve before the work**: ``blocked_for()``
counts the attempt in the same atomic step that checks the limit, and
``forgive()`` removes it when the attempt succeeded. Counting only after a
failure (check, work, record) would let N parallel guesses all pass the check
before any failure is recorded: N passwords tried instead of the limit. The
price: attempts still running count against the limit, so more than the limit
of *simultaneous* correct sign-ins to one account would see a 429 (never seen
in practice at 10/hour); an attempt that ends in neither (a 500, a malformed
webhook body) stays counted as a failure.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from rest_framework.throttling import SimpleRateThrottle

from bitrixsync.client_address import client_address
from crmbridge.redis_io.connection import get_redis

logger = logging.getLogger("bitrixsync.throttling")
REDIS_ERRORS = (redis.RedisError, OSError)
KEY_PREFIX = "bitrixsync:throttle:"
UNLIMITED = 2**31  # a limit no window reaches: add the attempt whatever the count

# KEYS[1]: the window's sorted set. ARGV: window (ms), limit, a unique member.
# Returns {1, 0} (added: allowed) or {0, ms until the count is under the limit}.
SLIDING_WINDOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local window, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, 0}
end
-- Under the limit again once all but limit - 1 entries have left: the (count - limit + 1)th oldest.
local entry = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
if entry[2] == nil then return {0, window} end  -- a limit of 0: always a full window
return {0, tonumber(entry[2]) + window - now}
"""
_script = redis.Redis().register_script(SLIDING_WINDOW)  # no connection yet: the client is given per call


def throttle_redis() -> redis.Redis:
    """The shared client on ``settings.REDIS_URL`` (read each time: tests point it at a private Redis)."""
    timeout = settings.REDIS_PUBLISH_TIMEOUT  # a sign-in must not wait long for the limiter
    return get_redis(socket_timeout=timeout, connect_timeout=timeout, retries=False, name="bitrixsync-throttle")


def take(key: str, window_seconds: int, limit: int, member: str) -> float | None:
    """Count ``member`` in the window ``key`` if under ``limit``: None, or seconds until that is possible."""
    added, wait_ms = _script(keys=[key], args=[window_seconds * 1000, limit, member], client=throttle_redis())
    return None if added else max(1.0, int(wait_ms) / 1000)


def attempt_id() -> str:
    return uuid.uuid4().hex


class RedisThrottle(SimpleRateThrottle):
    """A DRF throttle for ``scope``, per client address; rate from ``settings.THROTTLE_RATES`` at each request."""

    scope = ""
    cache_format = KEY_PREFIX + "%(scope)s:%(ident)s"
    waiting = 1.0

    def get_rate(self) -> str | None:
        return settings.THROTTLE_RATES.get(self.scope)

    def get_ident(self, request) -> str:
        return client_address(request)

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        try:
            wait = take(self.get_cache_key(request, view), self.duration, self.num_requests, attempt_id())
        except REDIS_ERRORS as exc:
            fail_open(self.scope, exc)
            return True
        if wait is not None:
            self.waiting = wait
        return wait is None

    def wait(self) -> float:
        """Seconds before the next request may pass (at least 1), from the oldest entries of the window."""
        return self.waiting


class LoginRateThrottle(RedisThrottle):
    scope = "login"


class RegisterRateThrottle(RedisThrottle):
    scope = "register"


class FailureThrottle(RedisThrottle):
    """Attempts that count unless they succeed: ``blocked_for()`` before the work, ``forgive()`` after a success.

    ``blocked_for()`` reserves this attempt atomically with the check (see the
    module docstring for why not check-then-record); ``record()`` only matters
    for an attempt that was not reserved (Redis failed open at the check).
    """

    def __init__(self, scope: str, ident: str) -> None:
        self.scope = scope
        super().__init__()
        # Hashed: an e-mail address is not kept in Redis as a key name.
        self.key = self.cache_format % {"scope": scope, "ident": hashlib.sha256(ident.encode()).hexdigest()[:32]}
        self.member: str | None = None  # this attempt's entry, once counted

    def blocked_for(self) -> float | None:
        """Seconds until the next attempt is allowed, or None: allowed, and counted as a failure until forgiven."""
        return self._count(self.num_requests)

    def record(self) -> None:
        """The attempt failed: counted already by ``blocked_for()``, else now."""
        if self.member is None:
            self._count(UNLIMITED)

    def forgive(self) -> None:
        """The attempt succeeded: it no longer counts."""
        if self.member is None:
            return
        try:
            throttle_redis().zrem(self.key, self.member)
        except REDIS_ERRORS as exc:
            fail_open(self.scope, exc)
        self.member = None

    def _count(self, limit: int) -> float | None:
        if self.rate is None:
            return None
        member = attempt_id()
        try:
            wait = take(self.key, self.duration, limit, member)
        except REDIS_ERRORS as exc:
            fail_open(self.scope, exc)
            return None
        if wait is None:
            self.member = member
        return wait


def fail_open(scope: str, exc: Exception) -> None:
    logger.warning("Rate limit %s not applied: Redis unavailable (%s); request served", scope, type(exc).__name__)


def retry_after(seconds: float) -> str:
    return str(max(1, int(seconds + 0.999)))


class AdminLoginThrottleMiddleware:
    """``POST /admin/login/`` attempts per address (scope ``admin_login``): 429 past the limit."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.path_info == reverse("admin:login"):
            wait = FailureThrottle("admin_login", client_address(request)).blocked_for()  # every attempt counts
            if wait is not None:
                response = HttpResponse("Too many sign-in attempts. Try again later.\n", status=429,
                                        content_type="text/plain; charset=utf-8")  # fmt: skip
                response["Retry-After"] = retry_after(wait)
                return response
        return self.get_response(request)
