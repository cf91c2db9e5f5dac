"""Names of every Redis key the project uses, all under ``REDIS_STREAM_PREFIX``.

=====================  ==============================================
``{prefix}operations``  deal/contact operations (published -> worker)
``{prefix}webhooks``    inbound Bitrix events (endpoint -> worker)
``{prefix}dead``        dead letters: original message + reason
``bitrix_workers``      the consumer group on both streams
=====================  ==============================================
"""

from __future__ import annotations

import re

import redis
from django.conf import settings

GROUP = "bitrix_workers"


def prefix() -> str:
    return settings.REDIS_STREAM_PREFIX


def key(name: str) -> str:
    """Any other project key, e.g. ``key("workers:worker_host-12")``."""
    return f"{prefix()}{name}"


def operations_stream() -> str:
    return key("operations")


def webhooks_stream() -> str:
    return key("webhooks")


def dead_letter_stream() -> str:
    return key("dead")


def consumed_streams() -> list[str]:
    """The streams the worker consumes with the ``bitrix_workers`` group."""
    return [operations_stream(), webhooks_stream()]


# --- stream entry IDs ("<ms>-<seq>") and Redis's stream errors: read in one place -------------

StreamId = tuple[int, int]
# A full entry ID as a client may send one (a URL path part): checked before it reaches Redis.
STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$", re.ASCII)  # ASCII: \d alone also takes "٣"


def parse_id(raw: str | bytes) -> StreamId:
    """``"1700000000000-3"`` -> ``(1700000000000, 3)``; sorts IDs as Redis does."""
    if isinstance(raw, bytes):  # a client without decode_responses
        raw = raw.decode()
    ms, _, seq = raw.partition("-")
    return int(ms), int(seq or 0)


def format_id(stream_id: StreamId) -> str:
    return f"{stream_id[0]}-{stream_id[1]}"


def id_milliseconds(entry_id: str | None) -> int | None:
    """The Unix time in ms that a stream ID carries (``"1700000000000-0"`` -> 1700000000000)."""
    if not entry_id:
        return None
    head = entry_id.split("-", 1)[0]
    return int(head) if head.isascii() and head.isdigit() else None  # "²".isdigit() is True


def is_nogroup(exc: BaseException) -> bool:
    """The group or stream is gone: NOGROUP, or UNBLOCKED (the key was deleted during a blocking read)."""
    return isinstance(exc, redis.ResponseError) and str(exc).startswith(("NOGROUP", "UNBLOCKED"))


def is_no_such_key(exc: BaseException) -> bool:
    """``XINFO`` on a stream that does not exist."""
    return isinstance(exc, redis.ResponseError) and "no such key" in str(exc).lower()
