"""The Bitrix client and the sandbox load without Django settings (measurement scripts, other tools)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # a separate process: run once, on SQLite (see test.sh)
def test_the_client_and_the_sandbox_import_without_django_settings():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = "import crmbridge.bitrix.client, devtools.sandbox.server; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
