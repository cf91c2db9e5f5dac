"""GET /metrics: who may read it, and what it says."""

from __future__ import annotations

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from crmbridge.redis_io import contact_counts, streams, telemetry
from tests.diagnostics.helpers import add_dead_letters, beat, create_group, deliver, publish

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-5f1e0c"


@pytest.fixture(autouse=True)
def metrics_token(settings):
    settings.BITRIX_METRICS_TOKEN = TOKEN


def samples(response) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(token: str = TOKEN):
    return Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")


def test_no_credentials_is_401():
    response = Client().get("/metrics")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_wrong_token_is_403():
    assert scrape("not-the-token").status_code == 403


def test_no_token_configured_refuses_every_token(settings):
    settings.BITRIX_METRICS_TOKEN = ""

    assert scrape("").status_code == 403
    assert scrape(TOKEN).status_code == 403


def test_right_token_is_200_in_prometheus_format():
    response = scrape()

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert samples(response)[("bitrixsync_redis_up", ())] == 1


def test_staff_session_may_read_and_other_users_may_not(staff_browser, alice):
    assert staff_browser.get("/metrics").status_code == 200
    customer = Client()
    customer.force_login(alice)
    assert customer.get("/metrics").status_code == 403


def test_metrics_reflect_streams_workers_and_counters_in_redis(redis_client):
    create_group(redis_client)
    publish(redis_client, 5)
    deliver(redis_client, 2)
    add_dead_letters(redis_client, 1)
    beat(redis_client, "worker_h-1", processed=7)
    telemetry.count(redis_client, "processed", "deal", "create", 4)
    telemetry.count(redis_client, "retried", "contact", "update", 2)
    telemetry.mark(redis_client, "success", "ok")
    ops = (("stream", streams.operations_stream()),)

    found = samples(scrape())

    assert found[("bitrixsync_stream_length", ops)] == 6
    assert found[("bitrixsync_group_exists", ops)] == 1
    assert found[("bitrixsync_group_pending", ops)] == 2
    assert found[("bitrixsync_group_lag", ops)] == 3
    assert found[("bitrixsync_dead_letters", ())] == 1
    assert found[("bitrixsync_workers_live", ())] == 1
    worker = (("outcome", "processed"), ("worker", "worker_h-1"))
    assert found[("bitrixsync_worker_operations_total", worker)] == 7
    by_kind = (("entity", "deal"), ("op", "create"), ("outcome", "processed"))
    assert found[("bitrixsync_operations_last_hour", by_kind)] == 4
    by_kind = (("entity", "contact"), ("op", "update"), ("outcome", "retried"))
    assert found[("bitrixsync_operations_last_hour", by_kind)] == 2
    assert found[("bitrixsync_last_success_timestamp_seconds", ())] > 0
    assert ("bitrixsync_outbox_backlog", ()) in found


def test_bitrix_timings_are_exported_when_workers_record_them(redis_client):
    beat(redis_client, "worker_h-1", bitrix_calls=10, bitrix_call_seconds_sum=1.5, rate_limit_waits=2)

    found = samples(scrape())

    assert found[("bitrixsync_bitrix_call_seconds_count", (("worker", "worker_h-1"),))] == 10
    assert found[("bitrixsync_bitrix_call_seconds_sum", (("worker", "worker_h-1"),))] == 1.5
    # Only the count was recorded for waits: no half summary.
    assert ("bitrixsync_rate_limit_wait_seconds_count", (("worker", "worker_h-1"),)) not in found


def test_redis_down_still_answers(private_redis):
    private_redis.stop()

    response = scrape()

    assert response.status_code == 200
    assert samples(response)[("bitrixsync_redis_up", ())] == 0


ENVELOPE_KEYS = {"success", "message", "data"}


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_other_methods_answer_in_the_envelope(method):
    """Issue 19 item 13: an anonymous POST was Django's CSRF 403, outside the operators' envelope."""
    browser = Client(enforce_csrf_checks=True)  # as a real client: no CSRF token

    anonymous = getattr(browser, method)("/metrics")
    with_token = getattr(browser, method)("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert anonymous.status_code == 401
    assert set(anonymous.json()) == ENVELOPE_KEYS and anonymous.json()["success"] is False
    assert with_token.status_code == 405
    assert set(with_token.json()) == ENVELOPE_KEYS and "GET" in with_token["Allow"]


def test_contact_outcomes_are_prometheus_counters(redis_client):
    """Issue 20, item 8: contacts adopted by e-mail / phone, ambiguous, created, summed over all workers."""
    contact_counts.add(redis_client, {"adopted_email": 3, "adopted_phone": 1, "ambiguous": 2})
    contact_counts.add(redis_client, {"created": 7})

    found = samples(scrape())

    for outcome, value in {"adopted_email": 3, "adopted_phone": 1, "ambiguous": 2, "created": 7}.items():
        assert found[("bitrixsync_contacts_total", (("outcome", outcome),))] == value
