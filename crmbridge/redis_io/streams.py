"""Names of every Redis key the project uses, all under ``REDIS_STREAM_PREFIX``.

=====================  ==============================================
``{prefix}operations``  deal/contact operations (published -> worker)
``{prefix}webhooks``    inbound Bitrix events (endpoint -> worker)
``{prefix}dead``        dead letters: original message + reason
``bitrix_workers``      the consumer group on both streams
=====================  ==============================================
"""

from __future__ import annotations

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
