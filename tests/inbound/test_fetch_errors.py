"""A deal the worker cannot fetch for a reason of its own (a permanent error other than "not found").

Found by mutation testing (docs/mutation.md): only "not found" and retryable errors were tried.
The sandbox has no such error for ``crm.deal.get``, so a portal stand-in over real HTTP
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


def answer_batch(portal, errors: dict) -> None:
    portal.body = json.dumps({"result": {"result": {}, "result_error": errors}}).encode()


def test_a_permanent_error_is_a_dead_letter_with_its_code_and_an_error_line(portal, redis_client, caplog):
    answer_batch(portal, {"d987": {"error": "ERROR_CORE", "error_description": "Access to deal 987 denied"}})
    event = message("ONCRMDEALUPDATE", 987)
    locks = RecordLocks(redis_client, owner="w1", lease_ms=5000)
    batch = InboundBatch(BitrixClient(portal.url, read_timeout=5), locks, consumer="w1")

    with caplog.at_level(logging.DEBUG, logger="crmbridge.inbound"):
        outcome = batch.process([event])

    assert not outcome.done and not outcome.retry
    ((dead, letter),) = outcome.dead
    assert dead == event
    assert (letter.reason, letter.error_code, letter.consumer) == ("permanent_error", "ERROR_CORE", "w1")
    assert letter.error_description == "ERROR_CORE in crm.deal.get: Access to deal 987 denied"
    assert "[WEBHOOK] Could not fetch deal 987: ERROR_CORE in crm.deal.get: Access to deal 987 denied" in said(caplog)
