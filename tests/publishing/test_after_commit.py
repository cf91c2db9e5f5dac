"""After the commit: publishing in any thread, and an unexpected error that must not fail the save.

Pinned: a thread that never served a request (a management command, a worker thread)
publishes at commit; a web server thread's first request publishes after its response.
An error other than a Redis one while publishing after commit (here: a server that speaks
the Redis protocol but answers nonsense) never reaches the code that saved: the save, the
resync and the request succeed, the rows wait in the outbox, and a request logs the
ERROR line an operator greps for.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import TypeVar

import pytest
from django.core.signals import request_finished, request_started
from django.db import connection

from crmbridge.models import OutboxEntry
from crmbridge.publishing.publisher import queue_deal_update
from crmbridge.publishing.resync import resync
from tests.publishing.helpers import make_order, published

pytestmark = pytest.mark.django_db(transaction=True)

T = TypeVar("T")


def in_a_new_thread(work: Callable[[], T]) -> T:
    """``work()`` in a thread of its own (fresh thread-locals, its own database connection)."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the test's thread
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.fixture
def nonsense_redis(settings):
    """A server that accepts ``CLIENT`` and ``PING`` as Redis does and answers anything else with the integer 1."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve(conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as stream:
            while header := stream.readline():
                args = [stream.read(int(stream.readline()[1:]) + 2)[:-2] for _ in range(int(header[1:]))]
                command = args[0].upper()
                conn.sendall(b"+OK\r\n" if command == b"CLIENT" else b"+PONG\r\n" if command == b"PING" else b":1\r\n")

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    settings.REDIS_URL = f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    yield
    server.close()


def test_a_thread_that_never_served_a_request_publishes_at_commit(alice, redis_client):
    order = make_order(alice)

    message_id = in_a_new_thread(lambda: queue_deal_update(order.pk))

    assert message_id == redis_client.xrevrange("bitrix:operations", count=1)[0][0]
    assert published(redis_client)[-1] == ("deal", "update", order.pk, "signal")


def test_the_first_request_of_a_new_thread_publishes_after_its_response(alice, redis_client):
    order = make_order(alice)

    def serve_one_request() -> None:
        request_started.send(sender=None)
        queue_deal_update(order.pk)
        request_finished.send(sender=None)

    in_a_new_thread(serve_one_request)

    assert published(redis_client)[-1] == ("deal", "update", order.pk, "signal")


@pytest.mark.programming_errors_expected  # nonsense_redis: a TypeError inside redis-py
def test_an_unexpected_error_after_commit_does_not_fail_the_save(alice, nonsense_redis):
    order = make_order(alice)

    assert OutboxEntry.objects.get().fields["id"] == str(order.pk)  # left for the relay


@pytest.mark.programming_errors_expected  # nonsense_redis: a TypeError inside redis-py
def test_an_unexpected_error_after_commit_does_not_fail_the_resync(alice, settings, nonsense_redis):
    settings.BITRIX_ENABLED = False
    order = make_order(alice)
    settings.BITRIX_ENABLED = True

    assert resync(entities=["deal"]) == 1
    assert OutboxEntry.objects.get().fields["id"] == str(order.pk)


@pytest.mark.programming_errors_expected  # nonsense_redis: a TypeError inside redis-py
def test_an_unexpected_error_after_a_response_is_logged_for_the_relay(alice, nonsense_redis, caplog):
    request_started.send(sender=None)
    order = make_order(alice)
    queue_deal_update(order.pk)
    request_finished.send(sender=None)

    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    message = record.getMessage()  # the console's filter may have appended the traceback, redacted
    assert message.splitlines()[0] == "[QUEUE] Publishing 2 committed operations failed; the relay will send them"
    assert record.exc_info or "\nTraceback (most recent call last):" in message
    assert OutboxEntry.objects.count() == 2
