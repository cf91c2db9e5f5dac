"""Rows of the dashboard as an operator reads them: which record, when, and a bounded payload.

* ``record_of(fields)``: the order or user a message is about, with a link to
  its admin page (operations: ``entity`` + ``id``), or the portal record an
  inbound event names (``entity`` + ``bitrix_id``).
* ``preview(value)``: pretty JSON cut at ``PREVIEW_CHARS``, with the full size:
  a 3 MB payload must not make a 6 MB page (the whole one has its own URL).
* ``with_pending_records`` / ``dead_letter_row`` / ``recent_row``: the table rows.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import redis
from django.urls import NoReverseMatch, reverse

from crmbridge import entities
from crmbridge.diagnostics.config_facts import portal_url
from crmbridge.redis_io.streams import id_milliseconds
from crmbridge.worker.dead_letters import parse_dead_letter

PREVIEW_CHARS = 600


def record_of(fields: dict) -> dict | None:
    """``{"label", "url"}`` of the record a message or payload names, or ``None``."""
    if not isinstance(fields, dict):
        return None
    entity = str(fields.get("entity", ""))
    if entity not in entities.ENTITIES:
        return None
    # The worker's own parser: an ID it would refuse ("²", "0", 19 digits) names no record here either.
    if (local_id := entities.parse_record_id(fields.get("id"))) is not None:
        label = f"{entities.get(entity).local_name} {local_id}"
        return {"label": label, "url": _admin_url(entity, local_id), "external": False}
    if (bitrix_id := entities.parse_record_id(fields.get("bitrix_id"))) is not None:
        portal = portal_url()
        url = f"{portal}/crm/{entity}/details/{bitrix_id}/" if portal else ""
        return {"label": f"Bitrix {entity} {bitrix_id}", "url": url, "external": True}
    return None


def record_text(fields: dict | None) -> str:
    """One line naming the record of a message or payload: ``deal: order 7``; says so when there is none."""
    if fields is None:
        return "no longer there"
    record = record_of(fields)
    if record is None:
        entity = str(fields.get("entity", "?")) if isinstance(fields, dict) else "?"
        raw = str(fields.get("id", fields.get("bitrix_id", "?"))) if isinstance(fields, dict) else "?"
        return f"no valid record ({entity[:40]} {raw[:40]})"
    return f"{fields['entity']}: {record['label']}"


def listed_records(client: redis.Redis, stream: str, ids: list[str], *, dead: bool) -> list[dict]:
    """``[{"id", "record"}]`` for a confirmation page: what each entry (a dead letter's payload if ``dead``) names."""
    pipe = client.pipeline(transaction=False)
    for entry_id in ids:
        pipe.xrange(stream, min=entry_id, max=entry_id, count=1)
    rows = []
    for entry_id, found in zip(ids, pipe.execute(raise_on_error=False), strict=True):
        fields = found[0][1] if isinstance(found, list) and found else None
        if fields is not None and dead:
            fields = parse_dead_letter(entry_id, fields)["payload"]
        rows.append({"id": entry_id, "record": record_text(fields)})
    return rows


def _admin_url(entity: str, local_id: int) -> str:
    """The admin change page of the order or user (``""`` on a site without that admin)."""
    meta = entities.get(entity).model()._meta
    try:
        return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[local_id])
    except NoReverseMatch:
        return ""


def preview(value, limit: int = PREVIEW_CHARS, *, indent: int | None = 2) -> dict:
    """``{"text", "truncated", "size"}``: ``value`` as JSON (indented unless ``indent=None``), cut at ``limit``."""
    separators = None if indent else (", ", ": ")
    text = json.dumps(value, indent=indent, separators=separators, ensure_ascii=False, sort_keys=True, default=str)
    truncated = len(text) > limit
    return {"text": text[:limit] + ("\n…" if truncated else ""), "truncated": truncated, "size": _size(text)}


def _size(text: str) -> str:
    size = len(text.encode("utf-8", "replace"))
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / 1024 / 1024:.1f} MB"


def time_of_id(entry_id: str | None) -> str:
    """When a stream entry was added (its ID carries the time), as ``2026-12-05 08:25:01``; ``""`` if unknown."""
    ms = id_milliseconds(entry_id)
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def short_time(iso: str) -> str:
    """An ISO 8601 time as ``2026-12-05 08:25:01`` (UTC), or the text as it is."""
    try:
        return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return iso or ""


def with_pending_records(client: redis.Redis, stream: str, rows: list[dict]) -> list[dict]:
    """Pending rows with the ``record`` each entry is about (one pipelined ``XRANGE`` per row)."""
    if not rows:
        return rows
    pipe = client.pipeline(transaction=False)
    for row in rows:
        pipe.xrange(stream, min=row["id"], max=row["id"], count=1)
    found = pipe.execute()
    return [
        {**row, "record": record_of(entries[0][1]) if entries else None, "queued_at": time_of_id(row["id"])}
        for row, entries in zip(rows, found, strict=True)
    ]


def dead_letter_row(letter: dict) -> dict:
    """A dead letter for the table: its record, a bounded payload, and "first seen" from the source ID.

    ``first_seen`` is the time the message entered its stream (its source ID
    carries it) unless the letter recorded one itself.
    """
    return {
        **letter,
        "record": record_of(letter.get("payload")),
        "payload_preview": preview(letter.get("payload")),
        "first_seen": short_time(letter.get("first_seen", "")) or time_of_id(letter.get("source_id")),
        "failed_at": short_time(letter.get("failed_at", "")) or time_of_id(letter.get("id")),
    }


def recent_row(message: dict) -> dict:
    return {
        **message,
        "record": record_of(message["fields"]),
        "preview": preview(message["fields"], limit=300, indent=None),  # one line per message: scannable
        "at": time_of_id(message["id"]),
    }


def ago(unix_seconds: float | None, now: float) -> str:
    """``12 s ago``, ``5 min ago``, ``3 h ago``, ``2 d ago``; ``""`` when unknown."""
    if not unix_seconds:
        return ""
    seconds = max(0.0, now - unix_seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"
