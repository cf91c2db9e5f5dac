"""Where the sandbox keeps deals and contacts: memory, optionally backed by SQLite.

Reads are always served from memory. With ``db_path`` every write also goes
to a SQLite file (with the ID counters), so a restarted sandbox has the same
records and never reuses an ID. An index by ``ORIGIN_ID`` serves the lookups
the sync makes and the duplicate counts; an index of contacts by normalised
e-mail and phone serves ``crm.duplicate.findbycomm`` (a scan of every contact
per command made the sandbox, not the worker, the bottleneck of the benchmarks
once tens of thousands of contacts existed).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import defaultdict

from crmbridge.bitrix.communications import normal
from devtools.sandbox.crm import ENTITIES

COUNTERS = (*ENTITIES, "multifield", "productrow")
COMMUNICATIONS = ("EMAIL", "PHONE")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (entity TEXT, id INTEGER, data TEXT, PRIMARY KEY (entity, id));
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER);
CREATE TABLE IF NOT EXISTS product_rows (deal_id INTEGER PRIMARY KEY, data TEXT);
"""


class RecordStore:
    def __init__(self, db_path: str | None = None) -> None:
        # Reentrant: a method reads, computes and saves under one hold.
        self.lock = threading.RLock()
        self._records: dict[str, dict[int, dict]] = {name: {} for name in ENTITIES}
        self._origins: dict[str, dict[str, set[int]]] = {name: defaultdict(set) for name in ENTITIES}
        self._next = dict.fromkeys(COUNTERS, 1)
        self._rows: dict[int, list[dict]] = {}  # deal id -> its product rows
        self._comms: dict[tuple[str, str], set[int]] = defaultdict(set)  # (kind, normal value) -> contact ids
        self._db = self._open(db_path) if db_path else None

    # -- identity ----------------------------------------------------------------
    def next_id(self, counter: str) -> int:
        with self.lock:
            value = self._next[counter]
            self._next[counter] = value + 1
            return value

    # -- records --------------------------------------------------------------------
    def get(self, entity: str, record_id: int) -> dict | None:
        """The stored record itself: callers copy before changing it."""
        return self._records[entity].get(record_id)

    def save(self, entity: str, record: dict) -> None:
        with self.lock:
            record_id = int(record["ID"])
            self._unindex(entity, self._records[entity].get(record_id))
            self._records[entity][record_id] = record
            self._index(entity, record)
            if self._db is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO records VALUES (?, ?, ?)", (entity, record_id, json.dumps(record))
                )
                self._persist_counters()

    def delete(self, entity: str, record_id: int) -> bool:
        with self.lock:
            record = self._records[entity].pop(record_id, None)
            self._unindex(entity, record)
            if entity == "deal":
                self._rows.pop(record_id, None)
            if record is not None and self._db is not None:
                self._db.execute("DELETE FROM records WHERE entity = ? AND id = ?", (entity, record_id))
                self._db.execute("DELETE FROM product_rows WHERE deal_id = ?", (record_id,))
                self._db.commit()
            return record is not None

    # -- product rows of deals -------------------------------------------------------------
    def rows(self, deal_id: int) -> list[dict]:
        return list(self._rows.get(deal_id, ()))

    def set_rows(self, deal_id: int, rows: list[dict]) -> None:
        """Replace the deal's rows (``crm.deal.productrows.set``)."""
        with self.lock:
            self._rows[deal_id] = list(rows)
            if self._db is not None:
                self._db.execute("INSERT OR REPLACE INTO product_rows VALUES (?, ?)", (deal_id, json.dumps(rows)))
                self._persist_counters()

    def all(self, entity: str) -> list[dict]:
        with self.lock:
            return [self._records[entity][key] for key in sorted(self._records[entity])]

    def with_origin(self, entity: str, origin: str) -> list[dict]:
        with self.lock:
            return [self._records[entity][key] for key in sorted(self._origins[entity].get(origin, ()))]

    def contacts_with(self, kind: str, values: set[str]) -> list[int]:
        """IDs of the contacts holding any of ``values`` (normalised, see ``communications.normal``)."""
        with self.lock:
            found: set[int] = set()
            for value in values:
                found |= self._comms.get((kind, value), set())
            return sorted(found)

    def count(self, entity: str) -> int:
        return len(self._records[entity])

    def duplicates(self, entity: str) -> dict[str, int]:
        """``ORIGIN_ID`` -> number of records, for origins held by more than one record."""
        with self.lock:
            return {origin: len(ids) for origin, ids in self._origins[entity].items() if len(ids) > 1}

    def clear(self) -> None:
        with self.lock:
            for entity in ENTITIES:
                self._records[entity].clear()
                self._origins[entity].clear()
            self._comms.clear()
            self._next = dict.fromkeys(COUNTERS, 1)
            self._rows.clear()
            if self._db is not None:
                self._db.execute("DELETE FROM records")
                self._db.execute("DELETE FROM product_rows")
                self._persist_counters()

    # -- internals ---------------------------------------------------------------------
    def _index(self, entity: str, record: dict) -> None:
        record_id = int(record["ID"])
        if record.get("ORIGIN_ID"):
            self._origins[entity][record["ORIGIN_ID"]].add(record_id)
        for key in _communications(entity, record):
            self._comms[key].add(record_id)

    def _unindex(self, entity: str, record: dict | None) -> None:
        if record is None:
            return
        record_id = int(record["ID"])
        origin = record.get("ORIGIN_ID")
        if origin:
            ids = self._origins[entity][origin]
            ids.discard(record_id)
            if not ids:
                del self._origins[entity][origin]
        for key in _communications(entity, record):
            ids = self._comms.get(key)
            if ids is not None:
                ids.discard(record_id)
                if not ids:
                    del self._comms[key]

    def _open(self, path: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, check_same_thread=False)  # used under self.lock only
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        for entity, data in db.execute("SELECT entity, data FROM records"):
            record = json.loads(data)
            self._records[entity][int(record["ID"])] = record
            self._index(entity, record)
        for deal_id, data in db.execute("SELECT deal_id, data FROM product_rows"):
            self._rows[int(deal_id)] = json.loads(data)
        for name, value in db.execute("SELECT name, value FROM counters"):
            self._next[name] = value
        return db

    def _persist_counters(self) -> None:
        self._db.executemany("INSERT OR REPLACE INTO counters VALUES (?, ?)", self._next.items())
        self._db.commit()


def _communications(entity: str, record: dict) -> set[tuple[str, str]]:
    """A contact's ``(kind, normalised value)`` pairs: what ``findbycomm`` matches on."""
    if entity != "contact":
        return set()
    pairs = set()
    for kind in COMMUNICATIONS:
        for entry in record.get(kind) or []:
            value = normal(kind, entry.get("VALUE")) if isinstance(entry, dict) else ""
            if value:
                pairs.add((kind, value))
    return pairs
