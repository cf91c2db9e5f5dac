"""A chunk that hits a bug is handled again one message at a time (found by mutation testing).

Pinned: even a chunk of two is split (each message then fails alone and is retried,
counted); the operator's guide's ERROR lines for the chunk, for each lone attempt and for
the exhausted message, with its id and the error; the dead letter's ``error_code`` and
``error_description`` name the exception's type and text.
"""

from __future__ import annotations

import logging

import pytest

from crmbridge.publishing.messages import Operation
from crmbridge.redis_io import streams
from crmbridge.worker import write_back
from crmbridge.worker.dead_letters import parse_dead_letter
from crmbridge.worker.runner import Worker
from tests.worker.helpers import fast_config

pytestmark = pytest.mark.django_db(transaction=True)


def broken_load_records(entity, local_ids):  # a fault in a collaborator: a bug for every deal
    raise RuntimeError(f"cannot load orders {local_ids}")


def test_a_failing_chunk_of_two_is_retried_one_by_one_until_dead_lettered(sandbox, redis_client, monkeypatch, caplog):
    ids = [redis_client.xadd(streams.operations_stream(), Operation("deal", "update", n).to_fields()) for n in (1, 2)]
    monkeypatch.setattr(write_back, "load_records", broken_load_records)

    with caplog.at_level(logging.ERROR, logger="crmbridge.worker"):
        Worker(fast_config(max_retries=1), once=True).run()

    entries = redis_client.xrange(streams.dead_letter_stream())
    letters = sorted((parse_dead_letter(i, f) for i, f in entries), key=lambda d: d["source_id"])
    assert [(d["source_id"], d["reason"]) for d in letters] == [(i, "max_retries_exceeded") for i in ids]
    assert [(d["error_code"], d["error_description"]) for d in letters] == [
        ("RuntimeError", "RuntimeError: cannot load orders [1]"),
        ("RuntimeError", "RuntimeError: cannot load orders [2]"),
    ]
    lines = [r.getMessage().split("\n", 1)[0] for r in caplog.records]
    chunk = "[WORKER] Error processing operation message: chunk of 2 failed; retrying its messages one by one"
    assert lines[0] == chunk
    for entry_id, n in zip(ids, (1, 2), strict=True):
        assert lines.count(f"[WORKER] Error processing operation message: {entry_id} failed") == 2  # try, retry
        error = f"[WORKER] Error processing operation message: {entry_id}: RuntimeError: cannot load orders [{n}]"
        assert lines.count(error) == 2  # the retry scheduled, then the retries exhausted
