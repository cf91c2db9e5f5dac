"""Rate limits: DRF throttles whose counters live in Redis (``REDIS_URL``), shared by every process.

Scopes and their settings (``THROTTLE_RATES``, env ``THROTTLE_*_RATE``):

==================  ===============================================  ==========================
scope               counts                                           where
==================  ===============================================  ==========================
``login``           every ``POST /auth/token`` per client address    ``accounts.views.TokenApi``
``login_failures``  failed sign-ins per account (any address)        ``accounts.views.TokenApi``
``register``        every ``POST /auth/register`` per address        ``accounts.views.RegisterApi``
``webhook_refused`` refused ``auth[application_token]`` per address  ``crmbridge.inbound.views``
``admin_login``     every ``POST /admin/login/`` per address         ``AdminLoginThrottleMiddleware``
==================  ===============================================  ==========================

Over the limit: 429 with ``Retry-After`` (seconds). The client address is
``REMOTE_ADDR``, or with ``THROTTLE_NUM_PROXIES=n`` (DRF's ``NUM_PROXIES``) the
address n proxies back in ``X-Forwarded-For``; behind a proxy set it, or every
client shares the proxy's address.

Redis down: the limits **fail open** (the request is served, a warning is
logged), never a 500: sign-in must not depend on the rate limiter's store,
and the worker's own Redis alarms already tell the operator.

The counters are DRF's sliding-window lists of timestamps, stored through
Django's ``RedisCache``. Reading and writing them is not atomic, so a burst of
parallel requests may pass a few over the limit: fine for brute-force limits.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

import redis
from django.conf import settings
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

logger = logging.getLogger("bitrixsync.throttling")
REDIS_ERRORS = (redis.RedisError, OSError)
_caches: dict[str, RedisCache] = {}


def throttle_cache() -> RedisCache:
    """A Django cache on ``settings.REDIS_URL`` (read each time: tests point it at a private Redis)."""
    url = settings.REDIS_URL
    if url not in _caches:
        timeout = settings.REDIS_PUBLISH_TIMEOUT  # a sign-in must not wait long for the limiter
        options = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
        _caches[url] = RedisCache(url, {"KEY_PREFIX": "bitrixsync", "OPTIONS": options})
    return _caches[url]


class RedisThrottle(SimpleRateThrottle):
    """A DRF throttle for ``scope``, per client address; rate from ``settings.THROTTLE_RATES`` at each request."""

    scope = ""

    @property
    def cache(self) -> RedisCache:  # DRF's default is the process's default cache
        return throttle_cache()

    def get_rate(self) -> str | None:
        return settings.THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except REDIS_ERRORS as exc:
            fail_open(self.scope, exc)
            return True

    def wait(self) -> float:
        """Seconds before the next request may pass: at least 1, never None (DRF's is None past the limit)."""
        remaining = self.duration - (self.now - self.history[-1]) if self.history else self.duration
        return max(1.0, super().wait() or remaining)


class LoginRateThrottle(RedisThrottle):
    scope = "login"


class RegisterRateThrottle(RedisThrottle):
    scope = "register"


class FailureThrottle(RedisThrottle):
    """Counts what the caller records: ask ``blocked_for()`` before the work, ``record()`` after a failure."""

    def __init__(self, scope: str, ident: str) -> None:
        self.scope = scope
        super().__init__()
        # Hashed: an e-mail address is not kept in Redis as a key name.
        self.key = self.cache_format % {"scope": scope, "ident": hashlib.sha256(ident.encode()).hexdigest()[:32]}

    def blocked_for(self) -> float | None:
        """Seconds until the next attempt is allowed, or None when it is allowed now."""
        if self.rate is None:
            return None
        try:
            self._load()
        except REDIS_ERRORS as exc:
            fail_open(self.scope, exc)
            return None
        return self.wait() if len(self.history) >= self.num_requests else None

    def record(self) -> None:
        if self.rate is None:
            return
        try:
            self._load()
            self.throttle_success()  # DRF's name: it appends this attempt to the history
        except REDIS_ERRORS as exc:
            fail_open(self.scope, exc)

    def _load(self) -> None:
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()


def client_address(request: HttpRequest) -> str:
    """The client's address as DRF's throttles see it (``REMOTE_ADDR``, or per ``NUM_PROXIES``)."""
    return BaseThrottle().get_ident(request)


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
            attempts = FailureThrottle("admin_login", client_address(request))
            wait = attempts.blocked_for()
            if wait is not None:
                response = HttpResponse("Too many sign-in attempts. Try again later.\n", status=429,
                                        content_type="text/plain; charset=utf-8")  # fmt: skip
                response["Retry-After"] = retry_after(wait)
                return response
            attempts.record()  # every attempt counts
        return self.get_response(request)
