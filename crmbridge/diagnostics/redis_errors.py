"""A Redis failure as a sentence an operator can act on, never with a secret."""

from __future__ import annotations

import redis

from bitrixsync.error_reports import scrub
from crmbridge.bitrix.webhook_url import redact
from crmbridge.redis_io.key_types import is_wrong_type


def redis_error_reason(exc: Exception) -> str:
    """What went wrong with Redis: unreachable, a key of the wrong type, or a refused command.

    Only a connection that fails is "unreachable": Redis that answers an error (``WRONGTYPE``
    on a key someone overwrote) is up, and saying otherwise sends the operator the wrong way.
    """
    # Every secret the settings know (REDIS_URL's password, REDIS_SENTINEL_PASSWORD...), not only REDIS_PASSWORD:
    # the clients never put one in an error (redis_io.connection), this is the second line.
    text = scrub(redact(str(exc))) or type(exc).__name__
    if is_wrong_type(exc):
        return f"a Redis key holds the wrong type of value ({text}); bitrix_doctor names it"
    if isinstance(exc, redis.ResponseError):
        return f"Redis refused the command ({type(exc).__name__}: {text})"
    return f"Redis is unreachable ({type(exc).__name__}: {text})"
