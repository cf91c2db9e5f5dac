"""The one error type of the Bitrix client, classified for the worker.

``kind`` tells the worker what to do:

* ``RETRY``: try again later (rate limit, 5xx, timeouts, connection errors,
  a body that is not JSON). ``retry_after`` is set when the portal said when.
* ``CONFIG``: the webhook is wrong, expired or lacks rights (401/403).
  Retrying cannot help until an operator fixes it: the worker pauses.
* ``PERMANENT``: this record cannot be synced as it is (400 validation, not found).
  The message goes to the dead letters at once.
"""

from __future__ import annotations

from enum import StrEnum

# Codes whose meaning does not depend on the HTTP status (a batch command has none).
RETRY_CODES = frozenset(
    {
        "QUERY_LIMIT_EXCEEDED",
        "OVERLOAD_LIMIT",
        "OPERATION_TIME_LIMIT",
        "INTERNAL_SERVER_ERROR",
        "ERROR_UNEXPECTED_ANSWER",
    }
)
CONFIG_CODES = frozenset(
    {
        "NO_AUTH_FOUND",
        "EXPIRED_TOKEN",
        "INVALID_TOKEN",
        "INVALID_CREDENTIALS",
        "INSUFFICIENT_SCOPE",
        "ACCESS_DENIED",
        "PORTAL_DELETED",
    }
)


class ErrorKind(StrEnum):
    RETRY = "retry"
    CONFIG = "config"
    PERMANENT = "permanent"


def classify(code: str, http_status: int | None) -> ErrorKind:
    """What the worker should do about an error: by its code first, then by its status.

    ``http_status`` is ``None`` for a command inside a batch. Unknown codes
    without a telling status (``""`` "Not found", ``ERROR_CORE``...) are
    problems of the record itself: permanent.
    """
    normalized = (code or "").upper()
    if normalized in RETRY_CODES:
        return ErrorKind.RETRY
    if normalized in CONFIG_CODES:
        return ErrorKind.CONFIG
    if http_status in (401, 403):
        return ErrorKind.CONFIG
    if http_status is not None and (http_status >= 500 or http_status in (408, 429)):
        return ErrorKind.RETRY
    return ErrorKind.PERMANENT


class BitrixError(Exception):
    def __init__(
        self,
        code: str,
        description: str = "",
        *,
        http_status: int | None = None,
        kind: ErrorKind = ErrorKind.RETRY,
        method: str = "",
        retry_after: float | None = None,
    ) -> None:
        from crmbridge.bitrix.webhook_url import redact

        self.code = code
        self.description = redact(description or "")[:1000]
        self.http_status = http_status
        self.kind = kind
        self.method = method
        self.retry_after = retry_after
        super().__init__(self.__str__())

    def __str__(self) -> str:
        status = f" HTTP {self.http_status}" if self.http_status else ""
        method = f" in {self.method}" if self.method else ""
        return f"{self.code or 'ERROR'}{status}{method}: {self.description}".rstrip(": ")

    def __repr__(self) -> str:
        return f"BitrixError({self.code!r}, kind={self.kind.value}, http_status={self.http_status})"

    @property
    def retryable(self) -> bool:
        return self.kind is ErrorKind.RETRY
