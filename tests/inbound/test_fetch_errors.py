"""A deal the worker cannot fetch: a permanent error other than "not found", or not a record.

Found by mutation testing (docs/mutation.md): only "not found" and retryable errors were tried.
The sandbox has neither for ``crm.deal.get``, so a portal stand-in over real HTTP
(``tests/bitrix/conftest.py``) answers the batch.
"""

from __future__ import annotations

import json
import logging

import pytest

from crmbridge.bitrix.client import BitrixClient
from crmbridge.inbound.processor import InboundBatch
from crmbridge.worker.record_locks import RecordLocks
from tests.bitrix import conftest as bitrix_fixtures
from tests.inbound.test_processor_outcomes import message, said

pytestmark = pytest.mark.django_db

portal = bitrix_fixtures.portal  # the portal stand-in fixture


def answer_batch(portal, errors: dict, results: dict | None = None) -> None:
    portal.body = json.dumps({"result": {"result": results or {}, "result_error": errors}}).encode()


def inbound_batch(portal, redis_client) -> InboundBatch:
    locks = RecordLocks(redis_client, owner="w1", lease_ms=5000)
    return InboundBatch(BitrixClient(portal.url, read_timeout=5), locks, consumer="w1")


def test_a_permanent_error_is_a_dead_letter_with_its_code_and_an_error_line(portal, redis_client, caplog):
    answer_batch(portal, {"d987": {"error": "ERROR_CORE", "error_description": "Access to deal 987 denied"}})
    event = message("ONCRMDEALUPDATE", 987)

    with caplog.at_level(logging.DEBUG, logger="crmbridge.inbound"):
        outcome = inbound_batch(portal, redis_client).process([event])

    assert not outcome.done and not outcome.retry
    ((dead, letter),) = outcome.dead
    assert dead == event
    assert (letter.reason, letter.error_code, letter.consumer) == ("permanent_error", "ERROR_CORE", "w1")
    assert letter.error_description == "ERROR_CORE in crm.deal.get: Access to deal 987 denied"
    assert "[WEBHOOK] Could not fetch deal 987: ERROR_CORE in crm.deal.get: Access to deal 987 denied" in said(caplog)


def test_an_answer_that_is_not_a_record_is_retried_and_says_what_came(portal, redis_client, caplog):
    answer_batch(portal, {}, {"d987": "nonsense"})
    event = message("ONCRMDEALUPDATE", 987)

    with caplog.at_level(logging.DEBUG, logger="crmbridge.inbound"):
        outcome = inbound_batch(portal, redis_client).process([event])

    ((retried, error),) = outcome.retry
    assert (retried, error.code, error.description) == (event, "INVALID_RESPONSE", "d987: not a record: 'nonsense'")
    assert f"[WEBHOOK] Could not fetch deal 987: {error}" in said(caplog)
