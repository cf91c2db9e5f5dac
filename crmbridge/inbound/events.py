"""Which portal events we handle, and the ``{prefix}webhooks`` message format (schema 1).

Like an operation, a message names the record and not its contents: the
portal sends only the ID, and the worker fetches the record's *current* state
when it processes the message. Late, repeated and out-of-order events are
therefore harmless.

Fields of a stream entry (all strings; never the application token):

===============  ==========================================================
``v``            schema version, ``"1"``
``event``        the portal's event name, e.g. ``ONCRMDEALUPDATE``
``entity``       ``deal`` or ``contact`` (derived from ``event``)
``bitrix_id``    the record's ID in Bitrix (``data[FIELDS][ID]``)
``ts``           when the portal says the change happened, ISO 8601 UTC;
                 empty when it did not say
``received_at``  when our endpoint received it, ISO 8601 UTC
``domain``       the portal (``auth[domain]``), for the logs
``src``          ``portal`` (the endpoint) or ``pull`` (``bitrix_pull_deals``)
===============  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings

from crmbridge import entities

SCHEMA_VERSION = "1"
MAX_DOMAIN_LENGTH = 255
# A portal time outside these years is not a real event (absurd input).
EARLIEST_YEAR, LATEST_YEAR = 2000, 2200


@dataclass(frozen=True)
class EventKind:
    entity: str  # "deal" (an order) or "contact" (a user)
    action: str  # "add", "update" or "delete"


HANDLED_EVENTS = {
    "ONCRMDEALADD": EventKind("deal", "add"),
    "ONCRMDEALUPDATE": EventKind("deal", "update"),
    "ONCRMDEALDELETE": EventKind("deal", "delete"),
    "ONCRMCONTACTADD": EventKind("contact", "add"),
    "ONCRMCONTACTUPDATE": EventKind("contact", "update"),
    "ONCRMCONTACTDELETE": EventKind("contact", "delete"),
}


class InvalidEvent(ValueError):
    """An event (or stream entry) we cannot use; the message says which part and why."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def parse_bitrix_id(raw: str | None) -> int:
    """``data[FIELDS][ID]``: a positive whole number of at most 18 digits."""
    raw = (raw or "").strip()
    if not raw:
        raise InvalidEvent("missing_id", "data[FIELDS][ID] is required for this event")
    number = entities.parse_record_id(raw)
    if number is None:
        raise InvalidEvent("invalid_id", f"data[FIELDS][ID] must be a positive whole number, got {raw[:40]!r}")
    return number


def parse_portal_time(raw: str | None) -> datetime | None:
    """The portal's ``ts`` (Unix seconds, as Bitrix sends it, or ISO 8601); None when absent."""
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        if raw.replace(".", "", 1).isdigit() and raw.isascii():
            moment = datetime.fromtimestamp(float(raw), tz=UTC)
        else:
            moment = datetime.fromisoformat(raw)
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        raise InvalidEvent("invalid_ts", f"ts must be a Unix time or ISO 8601, got {raw[:40]!r}") from None
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        raise InvalidEvent("invalid_ts", f"ts is out of range: {raw[:40]!r}")
    return moment


def _now() -> datetime:
    return datetime.now(UTC)


def latest_believable(moment: datetime) -> datetime:
    """The latest portal time we believe at ``moment``: ``BITRIX_INBOUND_MAX_CLOCK_SKEW_SECONDS`` ahead.

    Events are ordered by the portal's ``ts``; one far in the future (a wrong clock,
    a forged event) would make every later real event look older and freeze the
    record's status for good. Such a ``ts`` is not believed: the event is ordered
    by the time we received it, as one without a ``ts``. (Clamping it to this bound
    instead would still hide every real event of the next few minutes.)
    """
    return moment + timedelta(seconds=settings.BITRIX_INBOUND_MAX_CLOCK_SKEW_SECONDS)


@dataclass(frozen=True)
class InboundEvent:
    event: str
    bitrix_id: int
    ts: datetime | None = None
    received_at: datetime = field(default_factory=_now)
    domain: str = ""
    src: str = "portal"

    @property
    def kind(self) -> EventKind:
        return HANDLED_EVENTS[self.event]

    @property
    def entity(self) -> str:
        return self.kind.entity

    @property
    def changed_at(self) -> datetime:
        """The time that orders events: the portal's, or ours when it sent none or one too far ahead."""
        if self.ts is None or self.ts > latest_believable(self.received_at):
            return self.received_at
        return self.ts

    def describe(self) -> str:
        return f"{self.event} for {self.entity} {self.bitrix_id}"

    def to_fields(self) -> dict[str, str]:
        return {
            "v": SCHEMA_VERSION,
            "event": self.event,
            "entity": self.entity,
            "bitrix_id": str(self.bitrix_id),
            "ts": self.ts.isoformat() if self.ts else "",
            "received_at": self.received_at.isoformat(),
            "domain": self.domain,
            "src": self.src,
        }

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> InboundEvent:
        """Parse a stream entry, or raise ``InvalidEvent`` saying what is wrong."""
        version = fields.get("v", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise InvalidEvent("invalid_message", f"unsupported schema version {version!r}")
        event = fields.get("event", "")
        if event not in HANDLED_EVENTS:
            raise InvalidEvent("invalid_message", f"unhandled event {event[:64]!r}")
        received_at = parse_portal_time(fields.get("received_at"))
        return cls(
            event=event,
            bitrix_id=parse_bitrix_id(fields.get("bitrix_id")),
            ts=parse_portal_time(fields.get("ts")),
            received_at=received_at or _now(),
            domain=fields.get("domain", "")[:MAX_DOMAIN_LENGTH],
            src=fields.get("src", ""),
        )
