"""The dead-letter stream ``{prefix}dead``: nothing is dropped after the last retry.

A dead letter keeps the original message and says why it died. Moving an
entry there and acknowledging it happen in one Lua script (``ADD_THEN_ACK``):
XACK runs only if XADD succeeded. MULTI/EXEC was not enough: Redis does not
roll a transaction back when a command fails at run time (e.g. WRONGTYPE on
the dead-letter key), so XACK ran after a failed XADD and the message was
lost. A script stops at the first failing ``redis.call``; as XADD is its first
write, a failure writes nothing. Requeueing (XADD to the source, XDEL here) is
a script of the same kind.

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


# KEYS[1] stream to add to, KEYS[2] stream to acknowledge in; ARGV[1] group, ARGV[2] entry
# to acknowledge, ARGV[3..] field/value pairs. Returns the new entry's ID.
ADD_THEN_ACK = """
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
return id
"""

# KEYS[1] source stream, KEYS[2] dead-letter stream; ARGV[1] dead letter ID, ARGV[2..] pairs.
# Returns the new ID, or false when the letter is gone (someone requeued or deleted it).
REQUEUE = """
if #redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[1], 'COUNT', 1) == 0 then
    return false
end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
redis.call('XDEL', KEYS[2], ARGV[1])
return id
"""


class DeadLetterError(redis.ResponseError):
    """Some letters could not be written; their messages stay pending (nothing acknowledged)."""

    def __init__(self, failed: dict[str, str]) -> None:
        super().__init__(f"{len(failed)} dead letter(s) not written: " + "; ".join(sorted(set(failed.values()))))
        self.failed = failed  # source ID -> error


def add_then_ack(client, target: str, source: str, group: str, entry_id: str, fields: dict):
    """XADD ``fields`` to ``target``, then XACK ``entry_id`` in ``source``; the XACK only if XADD worked.

    ``client`` may be a pipeline (the reply then comes from its ``execute``).
    """
    pairs = [item for pair in fields.items() for item in pair]
    return client.register_script(ADD_THEN_ACK)(keys=[target, source], args=[group, entry_id, *pairs], client=client)


def move_to_dead_letters(client: redis.Redis, letters: Iterable[DeadLetter], *, group: str = streams.GROUP) -> int:
    """Add each letter to the dead stream and acknowledge its source, atomically per letter.

    Raises ``DeadLetterError`` naming the letters Redis refused: their messages are
    not acknowledged (still pending, not lost). The others are moved.
    """
    letters = list(letters)
    if not letters:
        return 0
    pipe, dead = client.pipeline(transaction=False), streams.dead_letter_stream()
    for letter in letters:
        add_then_ack(pipe, dead, letter.source_stream, group, letter.source_id, letter.to_fields())
    replies = pipe.execute(raise_on_error=False)
    failed = {
        letter.source_id: f"{type(reply).__name__}: {reply}"
        for letter, reply in zip(letters, replies, strict=True)
        if isinstance(reply, Exception)
    }
    if failed:
        raise DeadLetterError(failed)
    return len(letters)


def _count(value: str | None) -> int:
    """A count field as written by this worker; 0 for one a script or an older version wrote oddly."""
    return int(value) if value and value.isascii() and value.isdigit() else 0


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
        "attempts": _count(fields.get("attempts")),
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
        pairs = [item for pair in fields.items() for item in pair]
        # XDEL only after XADD succeeded: a refused XADD leaves the letter where it was.
        if client.register_script(REQUEUE)(keys=[source, dead], args=[dead_id, *pairs]):
            count += 1
    return count


def delete(client: redis.Redis, dead_ids: Iterable[str]) -> int:
    ids = list(dead_ids)
    return client.xdel(streams.dead_letter_stream(), *ids) if ids else 0
