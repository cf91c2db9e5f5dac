"""promtool (Debian's ``prometheus`` package; ``test.sh`` installs it): found, or the test skips saying why."""

from __future__ import annotations

import os
import shutil

import pytest


def promtool() -> str:
    path = shutil.which("promtool")
    if path:
        return path
    reason = "promtool is missing (apt-get install prometheus; test.sh installs it as root): alert rules not tested"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)
