"""The operation message format (schema version 1).

A message is small: it names the record, not its contents, because the worker
syncs the record's *current* state when it processes the message. Duplicate and
out-of-order messages for one record are therefore harmless.

Fields of a stream entry (all strings):

=========  ==========================================================
``v``      schema version, ``"1"``
``entity`` ``deal`` (an ``orders.Order``) or ``contact`` (an ``accounts.User``)
``op``     ``create`` or ``update``
``id``     the local primary key
``ts``     when the change happened, ISO 8601 UTC
``src``    optional: what queued it (``signal``, ``resync``, ``admin``)
=========  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from crmbridge import entities

SCHEMA_VERSION = "1"
OPERATIONS = ("create", "update")


class InvalidMessage(ValueError):
    """A stream entry that is not a valid operation (goes to the dead letters)."""


@dataclass(frozen=True)
class Operation:
    entity: str
    op: str
    local_id: int
    ts: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    src: str = "signal"

    def to_fields(self) -> dict[str, str]:
        return {
            "v": SCHEMA_VERSION,
            "entity": self.entity,
            "op": self.op,
            "id": str(self.local_id),
            "ts": self.ts,
            "src": self.src,
        }

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Operation:
        """Parse a stream entry, or raise ``InvalidMessage`` saying what is wrong."""
        version = fields.get("v", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise InvalidMessage(f"unsupported schema version {version!r}")
        entity = fields.get("entity")
        if entity not in entities.ENTITIES:
            raise InvalidMessage(f"unknown entity {entity!r}")
        op = fields.get("op")
        if op not in OPERATIONS:
            raise InvalidMessage(f"unknown operation {op!r}")
        raw_id = fields.get("id", "")
        local_id = entities.parse_record_id(raw_id)
        if local_id is None:
            raise InvalidMessage(f"invalid local id {raw_id!r}")
        return cls(entity=entity, op=op, local_id=local_id, ts=fields.get("ts", ""), src=fields.get("src", ""))
