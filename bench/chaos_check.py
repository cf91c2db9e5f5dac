"""The end of a chaos run: wait for the queue to drain, then check the invariants.

The expected fields come from the product's own mapping (``crmbridge.bitrix.mapping``)
applied to each record's current row, so this check cannot drift from what
the worker is meant to send. That part needs Django, so it runs as a
subprocess with the stack's environment (``python bench/chaos_check.py``
prints the expected deals and contacts as JSON); the parent only compares.

Compared per deal: TITLE, OPPORTUNITY (as a decimal), STAGE_ID, CONTACT_ID
(the owner's contact), CURRENCY_ID, COMMENTS; per contact: NAME, LAST_NAME,
and the values of EMAIL and PHONE (exactly one entry each, or none when the
user has no phone: an appended second entry is a wrong field). The record's
ID in the sandbox must be the Bitrix ID written back to the database.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import psycopg
import redis
import requests

ROOT = Path(__file__).resolve().parents[1]
STREAMS = ("bitrix:operations", "bitrix:webhooks")
DEAL_FIELDS = ("TITLE", "OPPORTUNITY", "STAGE_ID", "CONTACT_ID", "CURRENCY_ID", "COMMENTS")
CONTACT_FIELDS = ("NAME", "LAST_NAME", "EMAIL", "PHONE")


# -- draining -----------------------------------------------------------------------------------


BACKLOG_SQL = {
    "outbox": "SELECT COUNT(*) FROM crmbridge_outboxentry",
    "orders without deal": "SELECT COUNT(*) FROM orders_order WHERE bitrix_deal_id IS NULL",
    "users without contact": "SELECT COUNT(*) FROM accounts_user WHERE bitrix_contact_id IS NULL",
}


def count_rows(database: Path | str, queries: dict[str, str]) -> dict[str, int]:
    """``SELECT COUNT(*)`` answers by name, from a SQLite file or a ``postgres://`` URL."""
    if str(database).startswith("postgres"):
        with psycopg.connect(str(database)) as db:
            return {name: db.execute(sql).fetchone()[0] for name, sql in queries.items()}
    with sqlite3.connect(database, timeout=30) as db:
        return {name: db.execute(sql).fetchone()[0] for name, sql in queries.items()}


def backlog(database: Path | str, client: redis.Redis) -> dict[str, int]:
    """What is still to do: outbox rows, pending and unread stream entries, records without an ID."""
    left = count_rows(database, BACKLOG_SQL)
    for stream in STREAMS:
        pending, lag = _stream_backlog(client, stream)
        left[f"{stream} pending"], left[f"{stream} unread"] = pending, lag
    return left


def _stream_backlog(client: redis.Redis, stream: str) -> tuple[int, int]:
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError:  # no such stream yet
        return 0, 0
    pending = sum(g["pending"] for g in groups)
    lag = 0
    for group in groups:
        if group.get("lag") is not None:
            lag += group["lag"]
        elif group["last-delivered-id"] != client.xinfo_stream(stream)["last-generated-id"]:
            lag += 1  # Redis cannot count it (entries deleted): at least one unread
    return pending, lag


def wait_drained(database: Path | str, client: redis.Redis, *, timeout: float) -> tuple[float, dict[str, int]]:
    """Seconds until nothing is left twice in a row (or ``timeout``), and what was left last."""
    started = time.monotonic()
    clean_polls = 0
    left: dict[str, int] = {}
    while time.monotonic() - started < timeout:
        try:
            left = backlog(database, client)
        except (redis.RedisError, sqlite3.Error, psycopg.Error) as exc:
            left = {f"unreadable ({type(exc).__name__})": 1}
        clean_polls = clean_polls + 1 if not any(left.values()) else 0
        if clean_polls >= 2:
            return time.monotonic() - started, left
        time.sleep(0.5)
    return time.monotonic() - started, left


# -- invariants ----------------------------------------------------------------------------------


@dataclass
class Findings:
    records: dict[str, int] = field(default_factory=dict)  # checked orders / users
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    not_synced: list[str] = field(default_factory=list)
    dead_injected: int = 0
    dead_other: list[str] = field(default_factory=list)
    dead_unexplained: list[str] = field(default_factory=list)  # not injected and no reason given
    injected_missing: list[str] = field(default_factory=list)

    @property
    def broken(self) -> list[str]:
        """The invariants this run broke (empty: all held)."""
        checks = {
            "lost": self.lost, "duplicated": self.duplicated, "wrong fields": self.wrong,
            "orphan records in the sandbox": self.orphans, "sync records not synced": self.not_synced,
            "injected messages not dead-lettered as expected": self.injected_missing,
            "dead letters without a stated reason": self.dead_unexplained,
        }  # fmt: skip
        return [name for name, items in checks.items() if items]


def expected_records(env: dict[str, str]) -> dict:
    """Run this module as a script in a Django process: the mapping of every order and user."""
    out = subprocess.run(
        [sys.executable, str(Path(__file__)), "--expected"], env=env, cwd=ROOT, check=True, capture_output=True,
        text=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def check_records(expected: dict, sandbox_url: str, findings: Findings) -> None:
    for entity, names in (("deal", DEAL_FIELDS), ("contact", CONTACT_FIELDS)):
        records = requests.get(f"{sandbox_url}/_sandbox/records/{entity}", timeout=30).json()
        by_origin: dict[str, list[dict]] = {}
        for record in records:
            by_origin.setdefault(record.get("ORIGIN_ID") or "", []).append(record)
        wanted = expected[entity]
        findings.records[entity] = len(wanted)
        findings.orphans += [f"{entity} {r['ID']} ORIGIN_ID {o!r}" for o, rs in by_origin.items() if o not in wanted
                             for r in rs]  # fmt: skip
        for origin, fields in wanted.items():
            found = by_origin.get(origin, [])
            if not found:
                findings.lost.append(f"{origin}: no {entity}")
            elif len(found) > 1:
                findings.duplicated.append(f"{origin}: {entity}s {[r['ID'] for r in found]}")
            else:
                findings.wrong += _differences(origin, found[0], fields, names)
        findings.not_synced += expected["not_synced"] if entity == "deal" else []


def _differences(origin: str, record: dict, fields: dict, names: tuple[str, ...]) -> list[str]:
    wrong = []
    if str(record["ID"]) != str(fields["bitrix_id"]):
        wrong.append(f"{origin}: sandbox ID {record['ID']} but the database has {fields['bitrix_id']}")
    for name in names:
        got, want = _normal(name, record.get(name)), _normal(name, fields[name])
        if got != want:
            wrong.append(f"{origin}: {name} is {got!r}, expected {want!r}")
    return wrong


def _normal(name: str, value):
    if name in ("EMAIL", "PHONE"):
        return [entry.get("VALUE", "") if isinstance(entry, dict) else entry for entry in value or []]
    if name == "OPPORTUNITY":
        return Decimal(str(value or "0"))
    return "" if value is None else str(value)


def check_dead_letters(client: redis.Redis, injected: dict[str, tuple[str, str]], findings: Findings) -> None:
    """Each injected message must be dead with its reason; every other dead letter is listed."""
    seen: dict[str, str] = {}
    for entry_id, fields in client.xrange("bitrix:dead"):
        source, reason = fields.get("source_id", ""), fields.get("reason", "")
        if source in injected:
            seen[source] = reason
            findings.dead_injected += 1
        else:
            text = (f"{entry_id} from {source} payload {fields.get('payload')} reason {reason!r} "
                    f"({fields.get('error_code', '')}: {fields.get('error_description', '')[:150]})")  # fmt: skip
            findings.dead_other.append(text)
            if not reason or not (fields.get("error_code") or fields.get("error_description")):
                findings.dead_unexplained.append(text)
    for message_id, (description, reason) in injected.items():
        if seen.get(message_id) != reason:
            findings.injected_missing.append(f"{message_id} ({description}): expected {reason!r}, "
                                             f"got {seen.get(message_id)!r}")  # fmt: skip


def log_anomalies(log_dir: Path) -> dict[str, int]:
    """Errors the processes logged (not invariants: evidence for the report)."""
    patterns = {"worker tracebacks": ("worker", "Traceback (most recent call last)"),
                "web tracebacks": ("web", "Traceback (most recent call last)"),
                "'database is locked'": ("worker", "OperationalError: database is locked"),
                "UnicodeDecodeError": ("worker", "UnicodeDecodeError:")}  # fmt: skip
    counts = dict.fromkeys(patterns, 0)
    for path in log_dir.glob("*.log"):
        text = path.read_text(errors="replace")
        for name, (prefix, needle) in patterns.items():
            if path.name.startswith(prefix):
                counts[name] += text.count(needle)
    return counts


# -- the Django side ---------------------------------------------------------------------------------


def _expected_in_django() -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bitrixsync.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from accounts.models import User
    from crmbridge.bitrix import mapping
    from crmbridge.models import SyncRecord
    from orders.models import Order

    deals = {}
    for order in Order.objects.select_related("owner"):
        fields = mapping.deal_fields(order, contact_id=order.owner.bitrix_contact_id)
        deals[mapping.origin_id("deal", order.pk)] = {
            **{name: fields.get(name) for name in DEAL_FIELDS},
            "bitrix_id": order.bitrix_deal_id,
        }
    contacts = {}
    for user in User.objects.all():
        contacts[mapping.origin_id("contact", user.pk)] = {
            "NAME": user.first_name, "LAST_NAME": user.last_name, "EMAIL": [user.email] if user.email else [],
            "PHONE": [user.phone] if user.phone else [], "bitrix_id": user.bitrix_contact_id,
        }  # fmt: skip
    not_synced = [
        f"{r.entity} {r.local_id}: {r.state} ({r.last_error[:120]})"
        for r in SyncRecord.objects.exclude(state=SyncRecord.State.SYNCED)
    ]
    return {"deal": deals, "contact": contacts, "not_synced": not_synced}


if __name__ == "__main__" and sys.argv[1:] == ["--expected"]:
    print(json.dumps(_expected_in_django(), ensure_ascii=False, default=str))
