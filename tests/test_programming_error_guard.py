"""The guard in tests/conftest.py: a logged TypeError, KeyError... fails the test that caused it."""

from __future__ import annotations

import logging

from tests.conftest import _ProgrammingErrorLog


def logged(handler: _ProgrammingErrorLog, error: Exception, level: int = logging.ERROR) -> list[BaseException]:
    logger = logging.getLogger("crmbridge.worker.guard-test")
    logger.propagate = False  # not to this test's own guard
    logger.addHandler(handler)
    try:
        try:
            raise error
        except Exception:
            logger.log(level, "[WORKER] Error processing operation message: unexpected error", exc_info=True)
    finally:
        logger.removeHandler(handler)
    return [error for _, error in handler.errors]


def test_a_caught_programming_error_that_was_logged_is_kept_for_the_test():
    handler = _ProgrammingErrorLog()
    [error] = logged(handler, TypeError("'NoneType' object is not subscriptable"))

    assert isinstance(error, TypeError)
    [(text, _)] = handler.errors
    assert text.startswith(
        "crmbridge.worker.guard-test (thread MainThread): [WORKER] Error processing operation message: unexpected"
    )
    assert "TypeError: 'NoneType' object is not subscriptable" in text


def test_an_error_raised_from_a_programming_error_is_one_too():
    try:
        try:
            {}["ID"]
        except KeyError as exc:
            raise RuntimeError("cannot read the answer") from exc
    except RuntimeError as wrapped:
        error = wrapped

    assert logged(_ProgrammingErrorLog(), error) == [error]


def test_a_service_failure_or_a_deliberate_fault_is_not_a_programming_error():
    assert logged(_ProgrammingErrorLog(), RuntimeError("cannot load order 3")) == []
    assert logged(_ProgrammingErrorLog(), ConnectionError("Redis went away")) == []


def test_a_programming_error_below_error_level_is_left_alone():
    assert logged(_ProgrammingErrorLog(), KeyError("ID"), level=logging.WARNING) == []
