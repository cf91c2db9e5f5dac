"""Issue 19 item 13: a session a thread left on the PostgreSQL test database no longer stops its drop."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.db import connections as thread_connections

from tests.db_sessions import end_other_sessions, other_sessions

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_connection_a_finished_thread_left_open_is_ended():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only (DATABASE_URL=postgres://...): SQLite has no sessions to end")
    kept = []

    def query_and_finish():  # as a worker thread does: a query, then the thread ends, the connection stays
        with thread_connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
        kept.append(thread_connections["default"])

    thread = threading.Thread(target=query_and_finish)
    thread.start()
    thread.join()
    assert other_sessions() >= 1  # what made DROP DATABASE fail at the end of the run

    assert end_other_sessions() >= 1
    assert other_sessions() == 0
