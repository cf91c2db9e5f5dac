"""Redis away while publishing: the circuit breaker's states and the operator's log lines; the publishing client.

Pinned: one WARNING per outage, naming the error that the outbox row records, and one INFO
when it ends; after the cool-down exactly one caller probes; the line of each operation left
in the outbox names its record and row; the publishing client gives up within
``REDIS_PUBLISH_TIMEOUT``, never retries, and its connections are named in ``CLIENT LIST``.
"""

from __future__ import annotations

import pytest
import redis

from crmbridge.models import OutboxEntry
from crmbridge.publishing.publisher import CircuitBreaker, publish_client
from tests.publishing.helpers import make_order, messages

PAUSED = "publishing after commit paused for 30 s, operations stay in the outbox for the relay"


def publisher_lines(caplog) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "crmbridge.publishing.publisher"]


def test_an_outage_logs_one_warning_with_its_error_and_one_info_when_it_ends(settings, caplog):
    settings.BITRIX_PUBLISH_BREAKER_SECONDS = 30
    breaker = CircuitBreaker()

    breaker.record_failure(redis.ConnectionError("Connection refused"))
    breaker.record_failure(redis.TimeoutError("Timeout reading from socket"))  # a failed probe: same outage
    breaker.record_success()

    assert publisher_lines(caplog) == [
        ("WARNING", f"[QUEUE] Redis unavailable (ConnectionError: Connection refused); {PAUSED}"),
        ("INFO", "[QUEUE] Redis reachable again; publishing after commit resumed"),
    ]


def test_after_the_cool_down_one_caller_probes_and_the_others_keep_skipping(settings):
    breaker = CircuitBreaker()
    settings.BITRIX_PUBLISH_BREAKER_SECONDS = 0  # this failure's cool-down is over at once
    breaker.record_failure(redis.ConnectionError("Connection refused"))
    settings.BITRIX_PUBLISH_BREAKER_SECONDS = 60

    assert breaker.allow() is True  # the probe
    assert breaker.allow() is False and breaker.allow() is False  # the others wait out the probe's cool-down
    assert breaker.is_open()


@pytest.mark.django_db(transaction=True)
def test_with_redis_down_the_lines_name_the_error_the_record_and_the_outbox_row(alice, private_redis, settings, caplog):
    settings.BITRIX_PUBLISH_BREAKER_SECONDS = 30
    private_redis.stop()

    order = make_order(alice)

    row = OutboxEntry.objects.get()
    assert row.last_error.startswith("ConnectionError: ")
    assert messages(caplog, "[QUEUE]") == [f"[QUEUE] Redis unavailable ({row.last_error}); {PAUSED}"]
    assert messages(caplog, "[QUEUE_DEAL]") == [
        f"[QUEUE_DEAL] Redis unavailable; deal creation for order {order.pk} kept in outbox (entry {row.pk})"
    ]


def test_the_publishing_client_gives_up_within_the_publish_timeout_and_never_retries(settings):
    settings.REDIS_SOCKET_TIMEOUT = 10.0
    settings.REDIS_PUBLISH_TIMEOUT = 0.3

    options = publish_client().connection_pool.connection_kwargs

    assert (options["socket_timeout"], options["socket_connect_timeout"]) == (0.3, 0.3)
    assert options["retry"].get_retries() == 0


@pytest.mark.django_db(transaction=True)
def test_the_connection_a_save_publishes_on_is_named_in_client_list(alice, redis_client):
    make_order(alice)

    assert "bitrixsync-publisher" in {client["name"] for client in redis_client.client_list()}
