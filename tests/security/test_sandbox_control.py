"""Item 12: the sandbox's control endpoints refuse cross-site requests; run_stack hides the inbound token."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request

import pytest

from devtools.dev_stack import DevStack


def control(server, path: str, *, method: str = "POST", **headers: str) -> int:
    request = urllib.request.Request(
        f"{server.base_url}{path}", method=method, data=b"{}" if method == "POST" else None,
        headers={"Content-Type": "application/json", **headers},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        json.loads(exc.read())  # still a JSON answer
        return exc.code


def test_same_machine_requests_are_served(sandbox):
    port = sandbox.base_url.rsplit(":", 1)[1]
    assert control(sandbox, "/_sandbox/reset") == 200
    assert control(sandbox, "/_sandbox/stats", method="GET") == 200
    assert control(sandbox, "/_sandbox/reset", Origin=f"http://127.0.0.1:{port}") == 200
    assert control(sandbox, "/_sandbox/reset", Host=f"localhost:{port}") == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Host": "evil.example"},  # DNS rebinding: a foreign name resolving to 127.0.0.1
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
def test_cross_site_requests_are_403(sandbox, headers):
    assert control(sandbox, "/_sandbox/reset", **headers) == 403
    assert control(sandbox, "/_sandbox/stats", method="GET", **headers) == 403


def test_an_origin_on_another_port_or_scheme_is_403(sandbox):
    """Issue 19 item 13: another local server (another port) is another origin, and another site."""
    port = int(sandbox.base_url.rsplit(":", 1)[1])
    other = 9999 if port != 9999 else 9998
    for origin in (f"http://127.0.0.1:{other}", f"http://localhost:{other}", "http://127.0.0.1",
                   f"https://127.0.0.1:{port}", f"http://[::1]:{other}"):  # fmt: skip
        assert control(sandbox, "/_sandbox/reset", Origin=origin) == 403, origin
    assert control(sandbox, "/_sandbox/reset", Origin=f"http://localhost:{port}") == 200


def test_rest_calls_are_not_affected_by_the_check(sandbox):
    request = urllib.request.Request(f"{sandbox.webhook_url}profile.json", headers={"Origin": "https://evil.example"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def test_run_stack_passes_the_inbound_token_by_environment(monkeypatch, settings, tmp_path):
    settings.BITRIX_INBOUND_TOKEN = "inbound-secret-for-the-sandbox"
    monkeypatch.setenv("BITRIX_INBOUND_TOKEN", settings.BITRIX_INBOUND_TOKEN)
    out = io.StringIO()
    stack = DevStack(out=out, var_dir=tmp_path)

    options = stack.sandbox_options()

    assert "inbound-secret-for-the-sandbox" not in " ".join(options)
    assert stack.child_env["BITRIX_INBOUND_TOKEN"] == "inbound-secret-for-the-sandbox"
    assert "inbound-secret-for-the-sandbox" not in out.getvalue()


def test_the_sandbox_command_reads_the_token_from_the_environment(monkeypatch):
    from django.core.management import load_command_class

    monkeypatch.setenv("BITRIX_INBOUND_TOKEN", "token-from-env")
    parser = load_command_class("devtools", "bitrix_sandbox").create_parser("manage.py", "bitrix_sandbox")

    assert parser.parse_args([]).application_token == "token-from-env"
