"""The webhook code never shows: not in logs (at DEBUG), output, error messages, tracebacks or reprs."""

from __future__ import annotations

import logging
import traceback

from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.errors import BitrixError
from crmbridge.bitrix.rate_limit import RedisRateLimiter
from devtools.testing.ports import free_port

worker_log = logging.getLogger("crmbridge.worker")


def failing_calls(sandbox, code: str, limiter) -> list:
    """(fault settings, client, call) for every error class the client knows."""
    client = BitrixClient(sandbox.webhook_url, limiter=limiter, read_timeout=0.3)
    wrong = BitrixClient(f"{sandbox.base_url}/rest/1/{code}-old/")
    closed = BitrixClient(f"http://127.0.0.1:{free_port()}/rest/1/{code}/", connect_timeout=0.5)
    return [
        ({}, wrong, lambda c: c.call("profile")),
        ({"auth_error": "expired_token"}, client, lambda c: c.call("profile")),
        ({"auth_error": "ACCESS_DENIED"}, client, lambda c: c.call("profile")),
        ({}, client, lambda c: c.call("no.such.method")),
        ({}, client, lambda c: c.get("deal", 404)),
        ({}, client, lambda c: c.add("contact", {"EMAIL": [{"VALUE": "bad"}]})),
        ({"error_503_share": 1.0}, client, lambda c: c.call("profile")),
        ({"error_500_share": 1.0}, client, lambda c: c.call("profile")),
        ({"html_share": 1.0}, client, lambda c: c.call("profile")),
        ({"operation_limits": {"crm.deal.add": 30}}, client, lambda c: c.add("deal", {})),
        ({"timeout_share": 1.0, "timeout_seconds": 1.0}, client, lambda c: c.call("profile")),
        ({}, closed, lambda c: c.call("profile")),
    ]


def test_the_webhook_code_appears_nowhere(sandbox, webhook_code, redis_client, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    for name in ("crmbridge", "urllib3", "requests"):
        caplog.set_level(logging.DEBUG, logger=name)
    limiter = RedisRateLimiter(redis_client, rate=1000, burst=1000, key="test:secrets")
    shown: list[str] = []

    for faults, client, call in failing_calls(sandbox, webhook_code, limiter):
        sandbox.reset()
        sandbox.set_faults(**faults)
        try:
            call(client)
        except BitrixError as exc:
            worker_log.exception("Failed to sync: %s", exc)  # as the worker logs it, traceback included
            shown += [str(exc), repr(exc), exc.description, "".join(traceback.format_exception(exc))]
        else:
            raise AssertionError(f"no error with {faults}")
        shown += [str(client), repr(client), client.redacted_url]
    sandbox.reset()
    batch = BitrixClient(sandbox.webhook_url).batch({"a": ("crm.deal.get", {"id": 1}), "b": ("nope", {})})
    shown += [str(error) for error in batch.errors.values()]
    shown += [repr(sandbox), str(sandbox), repr(limiter)]
    captured = capsys.readouterr()

    assert len(caplog.records) >= 12
    assert any("/rest/1/****/" in text for text in shown)
    for text in [caplog.text, captured.out, captured.err, *shown]:
        assert webhook_code not in text
