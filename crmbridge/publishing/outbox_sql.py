"""Plain SQL for the three statements every queued operation costs.

Insert the outbox row, upsert the record's ``SyncRecord`` to "waiting", and
delete the rows this process sent before (see "Deferred deletes" in
``crmbridge.publishing.outbox``). They run on every save that queues an operation, and
the ORM (``bulk_create``, ``QuerySet.delete``) spent more Python time on each
than the database spent on the statement (measured: ``bench/README.md``).

The SQL is the same on SQLite and PostgreSQL (``INSERT ... RETURNING``,
``ON CONFLICT ... DO UPDATE``). On PostgreSQL, where each statement is a
network round trip, the three go as one statement (data-modifying ``WITH``
clauses). Columns and values come from the model fields, so a field added
later gets its default, as with the ORM.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from crmbridge.models import OutboxEntry, SyncRecord

# Rows per INSERT (SQLite allows 32766 parameters per statement, PostgreSQL 65535).
BATCH = 500

Statement = tuple[str, list]


def write(
    connection,
    *,
    sent: Sequence[tuple[int, uuid.UUID]],
    entries: Sequence[OutboxEntry],
    keys: Sequence[tuple[str, int]],
    now,
) -> None:
    """Delete the ``sent`` rows, insert ``entries`` (setting their keys), mark ``keys`` waiting."""
    if connection.vendor == "postgresql" and 0 < len(entries) <= BATCH and len(keys) <= BATCH:
        _write_in_one_statement(connection, sent, entries, keys, now)
        return
    if sent:
        _execute(connection, delete_sql(connection, sent))
    for start in range(0, len(entries), BATCH):
        batch = entries[start : start + BATCH]
        _set_keys(batch, _execute(connection, insert_sql(connection, batch), fetch=True))
    for start in range(0, len(keys), BATCH):
        _execute(connection, upsert_waiting_sql(connection, keys[start : start + BATCH], now))


def delete_sent(connection, sent: Sequence[tuple[int, uuid.UUID]]) -> None:
    _execute(connection, delete_sql(connection, sent))


def _write_in_one_statement(connection, sent, entries, keys, now) -> None:
    clauses, params = [], []
    if sent:
        sql, values = delete_sql(connection, sent)
        clauses.append(f"deleted AS ({sql})")
        params += values
    if keys:
        sql, values = upsert_waiting_sql(connection, keys, now)
        clauses.append(f"waiting AS ({sql})")
        params += values
    sql, values = insert_sql(connection, entries)
    prefix = f"WITH {', '.join(clauses)} " if clauses else ""
    _set_keys(entries, _execute(connection, (prefix + sql, params + values), fetch=True))


def delete_sql(connection, sent: Sequence[tuple[int, uuid.UUID]]) -> Statement:
    """Match ID *and* ``dedup_key``: an ID reused meanwhile never deletes an unsent row."""
    meta, quote = OutboxEntry._meta, connection.ops.quote_name
    key_field = meta.get_field("dedup_key")
    marks = ", ".join(["%s"] * len(sent))
    sql = (
        f"DELETE FROM {quote(meta.db_table)} "
        f"WHERE {quote(meta.pk.column)} IN ({marks}) AND {quote(key_field.column)} IN ({marks})"
    )
    params = [pk for pk, _key in sent] + [key_field.get_db_prep_value(key, connection) for _pk, key in sent]
    return sql, params


def insert_sql(connection, entries: Sequence[OutboxEntry]) -> Statement:
    meta, quote = OutboxEntry._meta, connection.ops.quote_name
    fields = _fields(OutboxEntry)
    params = [
        field.get_db_prep_save(getattr(entry, field.attname), connection) for entry in entries for field in fields
    ]
    returning = f" RETURNING {quote(meta.pk.column)}, {quote(meta.get_field('dedup_key').column)}"
    return _values_sql(connection, OutboxEntry, fields, len(entries)) + returning, params


def upsert_waiting_sql(connection, keys: Sequence[tuple[str, int]], now) -> Statement:
    meta, quote = SyncRecord._meta, connection.ops.quote_name
    fields = _fields(SyncRecord)
    params = []
    for entity, local_id in keys:
        given = {"entity": entity, "local_id": local_id, "state": SyncRecord.State.WAITING, "last_queued_at": now}
        for field in fields:
            value = given[field.name] if field.name in given else field.get_default()
            params.append(field.get_db_prep_save(value, connection))
    unique = ", ".join(quote(meta.get_field(name).column) for name in ("entity", "local_id"))
    updated = [quote(meta.get_field(name).column) for name in ("state", "last_queued_at")]
    conflict = f" ON CONFLICT ({unique}) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in updated)
    return _values_sql(connection, SyncRecord, fields, len(keys)) + conflict, params


def _fields(model) -> list:
    return [field for field in model._meta.concrete_fields if not field.primary_key]


def _values_sql(connection, model, fields: list, rows: int) -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    return f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES {', '.join([row] * rows)}"


def _set_keys(entries: Sequence[OutboxEntry], returned: list) -> None:
    key_field = OutboxEntry._meta.get_field("dedup_key")
    pks = {key_field.to_python(key): pk for pk, key in returned}  # RETURNING order is not promised
    for entry in entries:
        entry.pk = pks[entry.dedup_key]
        entry._state.adding = False


def _execute(connection, statement: Statement, *, fetch: bool = False):
    sql, params = statement
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if fetch else None
