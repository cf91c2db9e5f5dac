"""The dead-letter stream ``{prefix}dead``: nothing is dropped after the last retry.

A dead letter keeps the original message and says why it died. Moving an
entry there and acknowledging it happen in one MULTI/EXEC transaction, so a
crash can neither lose the message nor leave it in both places.

Fields of a dead letter (all strings):

=====================  ====================================================
``source_stream``      the stream the message came from
``source_id``          its ID there
``payload``            the original fields, as JSON
``reason``             short machine code: ``invalid_message``, ``record_not_found``,
                       ``permanent_error``, ``max_retries_exceeded``, ``manual``
``error_code``         the Bitrix error code (or exception type), may be empty
``error_description``  a human sentence (never a secret)
``attempts``           deliveries made before giving up
``first_seen``         when the worker first saw it (ISO 8601) if known
``failed_at``          when it was dead-lettered (ISO 8601)
``consumer``           the worker that gave up
=====================  ====================================================
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from crmbridge.bitrix.webhook_url import redact
from crmbridge.redis_io import streams


@dataclass(frozen=True)
class DeadLetter:
    source_stream: str
    source_id: str
    payload: dict
    reason: str
    error_code: str = ""
    error_description: str = ""
    attempts: int = 0
    first_seen: str = ""
    consumer: str = ""

    @classmethod
    def of(cls, message, *, reason: str, consumer: str, error_code: str = "", description: str = "") -> DeadLetter:
        """The dead letter for a stream message (anything with ``stream``, ``id``, ``fields``, ``deliveries``)."""
        return cls(
            source_stream=message.stream,
            source_id=message.id,
            payload=message.fields,
            reason=reason,
            error_code=error_code,
            error_description=description,
            attempts=message.deliveries,
            consumer=consumer,
        )

    def to_fields(self) -> dict[str, str]:
        return {
            "source_stream": self.source_stream,
            "source_id": self.source_id,
            "payload": json.dumps(self.payload, ensure_ascii=False),
            "reason": self.reason,
            "error_code": self.error_code,
            "error_description": redact(self.error_description)[:2000],
            "attempts": str(self.attempts),
            "first_seen": self.first_seen,
            "failed_at": datetime.now(UTC).isoformat(),
            "consumer": self.consumer,
        }


def move_to_dead_letters(client: redis.Redis, letters: Iterable[DeadLetter], *, group: str = streams.GROUP) -> int:
    """Add each letter to the dead stream and acknowledge its source, atomically."""
    letters = list(letters)
    if not letters:
        return 0
    pipe = client.pipeline(transaction=True)
    for letter in letters:
        pipe.xadd(streams.dead_letter_stream(), letter.to_fields())
        pipe.xack(letter.source_stream, group, letter.source_id)
    pipe.execute()
    return len(letters)


def parse_dead_letter(entry_id: str, fields: dict[str, str]) -> dict:
    """A dead letter as a plain dict for views (payload decoded)."""
    try:
        payload = json.loads(fields.get("payload", "{}"))
    except ValueError:
        payload = {"raw": fields.get("payload", "")}
    return {
        "id": entry_id,
        "source_stream": fields.get("source_stream", ""),
        "source_id": fields.get("source_id", ""),
        "payload": payload,
        "reason": fields.get("reason", ""),
        "error_code": fields.get("error_code", ""),
        "error_description": fields.get("error_description", ""),
        "attempts": int(fields.get("attempts") or 0),
        "first_seen": fields.get("first_seen", ""),
        "failed_at": fields.get("failed_at", ""),
        "consumer": fields.get("consumer", ""),
    }


def requeue(client: redis.Redis, dead_ids: Iterable[str]) -> int:
    """Put dead letters back on their source stream as new messages; remove them here.

    Returns how many were requeued. Unknown IDs are skipped.
    """
    count = 0
    dead = streams.dead_letter_stream()
    for dead_id in dead_ids:
        entries = client.xrange(dead, min=dead_id, max=dead_id, count=1)
        if not entries:
            continue
        letter = parse_dead_letter(*entries[0])
        payload = letter["payload"]
        if not isinstance(payload, dict) or not payload:
            continue
        source = letter["source_stream"] or streams.operations_stream()
        fields = {str(k): str(v) for k, v in payload.items()}
        fields["requeued_from"] = dead_id
        pipe = client.pipeline(transaction=True)
        pipe.xadd(source, fields)
        pipe.xdel(dead, dead_id)
        pipe.execute()
        count += 1
    return count


def delete(client: redis.Redis, dead_ids: Iterable[str]) -> int:
    ids = list(dead_ids)
    return client.xdel(streams.dead_letter_stream(), *ids) if ids else 0
