"""``manage.py bitrix_sandbox`` starts a real server process that answers like a portal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from crmbridge.bitrix.client import BitrixClient
from devtools.testing.ports import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # a separate process: run once, on SQLite (see test.sh)
def test_sandbox_command_serves_a_limited_portal_and_never_prints_the_code(tmp_path, webhook_code):
    port = free_port()
    env = {**os.environ, "BITRIX_SANDBOX_CODE": webhook_code, "DJANGO_SETTINGS_MODULE": "bitrixsync.settings"}
    command = [sys.executable, "manage.py", "bitrix_sandbox", "--port", str(port), "--rate", "5", "--burst", "20"]
    process = subprocess.Popen(
        [*command, "--db", str(tmp_path / "sandbox.sqlite3")], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        wait_for_port(port, timeout=15)
        client = BitrixClient(f"http://127.0.0.1:{port}/rest/1/{webhook_code}/")
        deal_id = client.add("deal", {"TITLE": "from another process"})
        assert client.get("deal", deal_id)["TITLE"] == "from another process"
        assert client.call("profile")["ID"] == "1"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)

    assert process.returncode == 0
    assert f"http://127.0.0.1:{port}/rest/1/****/" in output
    assert "5/s, burst 20" in output
    assert webhook_code not in output
