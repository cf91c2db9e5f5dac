"""Why ``./test.sh`` left a ``test_test`` database in PostgreSQL, and the cure.

pytest-django drops the test database at the end of the session; PostgreSQL
refuses ``DROP DATABASE`` while any other session is connected to it, and
pytest-django turns that failure into a warning, so the database stayed.
Sessions outlive their tests here: a worker run in a thread of the test process
(``tests/worker``) or a live-server or test-client request thread opens its own
connection, kept by ``CONN_MAX_AGE``, which nothing closes when the thread ends (the
connection goes only when the garbage collector finds it); a worker process a
test started and never reaped holds one too. ``end_other_sessions`` ends every
session on the test database but this one, just before the drop (session
teardown, ``tests/conftest.py``); ``test.sh`` then checks that the database is gone.
"""

from __future__ import annotations

from django.db import connection


def other_sessions() -> int:
    """Sessions on this connection's database other than this one (PostgreSQL; 0 elsewhere)."""
    if connection.vendor != "postgresql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def end_other_sessions() -> int:
    """Terminate the other sessions on the test database (PostgreSQL only); how many there were."""
    if connection.vendor != "postgresql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        ended = cursor.fetchone()[0]
    connection.close()
    return ended
