"""Shared fixtures: a private Redis, the Bitrix sandbox, named users, API clients; ``wait_for``.

Every test gets ``settings.REDIS_URL`` pointing at a redis-server this session
started on a free port, flushed before the test. No test ever talks to a Redis
it did not start, so no one's data can be flushed.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from rest_framework.test import APIClient

from crmbridge.redis_io.connection import reset_clients
from devtools.sandbox.server import SandboxServer
from devtools.testing.redis_server import PrivateRedis
from tests.db_sessions import end_other_sessions

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 60.0, what: str = "condition", interval: float = 0.05) -> T:
    """Poll ``condition()`` until it returns something truthy and return that; fail the test after ``timeout``.

    Workers and the sandbox work in other threads and processes: tests wait for
    what they expect instead of sleeping a guessed time.
    """
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} not met within {timeout}s"
        time.sleep(interval)
    return value


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix) -> None:
    """One SQLite test database per test process, named when the session starts.

    The settings name it by the pid of the process that imported them. mutmut imports
    them once and forks every test run from that process, so its parallel runs all
    created, flushed and dropped the same file: tests failed at random, and mutants were
    counted "killed" by those failures (docs/mutation.md, "False kills").
    """
    from django.conf import settings as django_settings

    database = django_settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        name = Path(tempfile.gettempdir()) / f"bitrixsync-test-{os.getpid()}.sqlite3"
        database["TEST"] = {**database.get("TEST", {}), "NAME": str(name)}


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's, ending the sessions left on the test database before it is dropped (tests/db_sessions.py)."""
    yield
    with django_db_blocker.unblock():
        end_other_sessions()


@pytest.fixture(scope="session", autouse=True)
def console_log_on_this_sessions_stderr():
    """Django's console handler on this session's stderr, not on an earlier session's closed one.

    mutmut runs pytest twice in one process (to find the tests that reach each function, then
    a clean run). Django configures logging once, in the first; its handler kept that session's
    captured stderr, closed since, and in the second every log line printed a "Logging error"
    traceback: slow enough that a 1,000-message test's requests timed out and were retried.
    """
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and getattr(handler.stream, "closed", False):
            handler.stream = sys.stderr  # not setStream(): it flushes the closed one first


# Exceptions that mean the code is wrong, not that a service failed: a worker, a publisher or a
# view that catches everything and logs it must never meet one of these while a test runs.
PROGRAMMING_ERRORS = (TypeError, AttributeError, NameError, KeyError, IndexError, ZeroDivisionError, AssertionError)


def _caused_by_a_programming_error(error: BaseException | None) -> bool:
    """The error, or one it was raised from or while handling (``raise Refused(...) from exc``)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, PROGRAMMING_ERRORS):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


class _ProgrammingErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors: list[tuple[str, BaseException]] = []  # (what was logged, with the traceback; the error)

    def emit(self, record: logging.LogRecord) -> None:
        # Formatted now: the console handler's redaction filter drops exc_info from this same record.
        # The thread's name says whose it was: a thread a test left running may log into the next test.
        if record.exc_info and _caused_by_a_programming_error(record.exc_info[1]):
            trace = logging.Formatter().formatException(record.exc_info)
            self.errors.append(
                (f"{record.name} (thread {record.threadName}): {record.getMessage()}\n{trace}", record.exc_info[1])
            )


@pytest.fixture(autouse=True)
def no_programming_errors_logged(request):
    """Fail a test during which the code logged a TypeError, AttributeError, KeyError... it caught.

    The worker survives what it does not expect: it logs the exception, retries the message and
    isolates it, so a bug in one of its steps often still ends with the record synced and the test
    green. Planted bugs showed it (docs/mutation.md): a ``None`` passed where an error was expected
    crashed a step, the isolation path made up for it, and no test noticed. Tests that inject a
    fault raise RuntimeError or a service's own error; a test that needs one of these types says so
    with ``@pytest.mark.programming_errors_expected``.
    """
    handler = _ProgrammingErrorLog()
    root = logging.getLogger()
    root.handlers.insert(0, handler)  # first: the console handler's redaction filter drops exc_info
    yield
    root.removeHandler(handler)
    if handler.errors and not request.node.get_closest_marker("programming_errors_expected"):
        pytest.fail(
            f"{len(handler.errors)} programming error(s) logged; the first by {handler.errors[0][0]}", pytrace=False
        )


@pytest.fixture(scope="session")
def private_redis():
    server = PrivateRedis().start()
    yield server
    server.cleanup()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """PBKDF2 costs ~0.2 s per user: far too slow for tests that make dozens."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def generous_rate_limits(settings):
    """The suite signs in and registers far more than a person would: limits only where a test sets them.

    The counters live in the private Redis, flushed for each test; tests about the
    limits (tests/security/test_throttling.py) set small rates of their own.
    """
    settings.THROTTLE_RATES = {scope: "100000/min" for scope in settings.THROTTLE_RATES}


@pytest.fixture(autouse=True)
def redis_url(private_redis, settings):
    """Point the project at the private Redis, empty, for every test."""
    if private_redis.process is None:  # a test stopped it; bring it back
        private_redis.start()
    private_redis.flush()
    settings.REDIS_URL = private_redis.url
    reset_clients()
    yield private_redis.url
    reset_clients()


@pytest.fixture(autouse=True)
def request_state_closed():
    """End any request a test left open (a WSGI response nobody closed).

    Inside a request, publishing waits for ``request_finished``; a test client
    that never closes its response would leave this thread "in a request" and
    hold later tests' operations back (the relay sends them, but only after
    their lease). Closing it after each test keeps tests independent.
    """
    yield
    from crmbridge.publishing.publisher import publish_after_response

    publish_after_response()


@pytest.fixture
def redis_client(private_redis):
    return private_redis.client()


@pytest.fixture
def sandbox_options() -> dict:
    """Keyword arguments for the ``sandbox`` fixture's ``SandboxServer``; a directory or module overrides it."""
    return {}


@pytest.fixture
def sandbox(settings, sandbox_options):
    """The Bitrix24 sandbox over real HTTP on a free port; the project points at it, with a high rate limit."""
    server = SandboxServer(port=0, **sandbox_options).start()
    settings.BITRIX_WEBHOOK_URL = server.webhook_url
    settings.BITRIX_RATE_LIMIT_PER_SECOND = 1000
    settings.BITRIX_RATE_LIMIT_BURST = 1000
    yield server
    server.stop()


def _make_user(django_user_model, username: str, **extra):
    return django_user_model.objects.create_user(
        username=username,
        email=f"{username}@example.com",
        password="S3cure-pass-1",
        first_name=username.capitalize(),
        last_name="Tester",
        **extra,
    )


@pytest.fixture
def alice(db, django_user_model):
    return _make_user(django_user_model, "alice")


@pytest.fixture
def bob(db, django_user_model):
    return _make_user(django_user_model, "bob")


@pytest.fixture
def admin_user(db, django_user_model):
    return _make_user(django_user_model, "admin", is_staff=True, is_superuser=True)


def _client_for(user) -> APIClient:
    from accounts.tokens import token_for

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(user)}")
    return client


@pytest.fixture
def alice_client(alice):
    return _client_for(alice)


@pytest.fixture
def bob_client(bob):
    return _client_for(bob)


@pytest.fixture
def admin_client_api(admin_user):
    return _client_for(admin_user)


@pytest.fixture
def anon_client():
    return APIClient()
