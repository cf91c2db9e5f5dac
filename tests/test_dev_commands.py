"""Issue 19 item 10: the README's development commands work as written; production still refuses.

A fresh checkout (the project's code copied to a temporary directory, its ``.venv``
a link to the one running these tests), then what a developer types in a second
terminal: ``python manage.py ...`` with a Python that has no Django (the README
says ``python``, not ``.venv/bin/python``), after ``./run.sh``'s first start wrote
the development ``.env`` (``python -m devtools.dev_env``, the step run.sh runs).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("accounts", "bitrixsync", "crmbridge", "devtools", "orders")
pytestmark = pytest.mark.slow


def python_without_django() -> str:
    """A Python 3 that cannot import Django, as ``python`` on a developer's PATH usually is."""
    for candidate in ("/usr/bin/python3", shutil.which("python3") or ""):
        if candidate and Path(candidate).exists():
            probe = subprocess.run([candidate, "-c", "import django"], capture_output=True)
            if probe.returncode != 0:
                return candidate
    pytest.skip("every python3 on this machine imports Django: nothing to show")


@pytest.fixture
def checkout(tmp_path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "manage.py", tmp_path / "manage.py")
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    return tmp_path


def run(checkout: Path, *args: str, python: str | None = None, **extra: str) -> subprocess.CompletedProcess:
    # A developer's shell: none of the tests' variables (PYTEST_VERSION would allow the tests' key).
    dropped = ("PYTEST_VERSION", "DEBUG", "SECRET_KEY", "DATABASE_URL", "DJANGO_", "SECURE_", "REDIS_", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update(STACK_ENV_FILE="", REDIS_URL="redis://127.0.0.1:9/0", **extra)
    return subprocess.run(
        [python or python_without_django(), *args], cwd=checkout, env=env, capture_output=True, text=True, timeout=180
    )


def test_without_the_development_env_file_commands_refuse_as_production_must(checkout):
    result = run(checkout, "manage.py", "check")

    assert result.returncode != 0
    assert "SECRET_KEY is not set and DEBUG is off" in result.stderr
    assert "Couldn't import Django" not in result.stderr  # manage.py found the checkout's .venv


def test_run_sh_writes_the_development_env_file_before_anything_else():
    script = (ROOT / "run.sh").read_text()

    assert script.index("-m devtools.dev_env") < script.index("manage.py migrate")


def test_the_readmes_second_terminal_commands_work_after_the_first_start(checkout):
    written = run(checkout, "-m", "devtools.dev_env", python=sys.executable)
    assert written.returncode == 0, written.stderr
    env_file = checkout / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    key = re.search(r"^SECRET_KEY=(\S{40,})$", env_file.read_text(), re.M)
    assert key and "DEBUG=true" in env_file.read_text()

    assert run(checkout, "manage.py", "migrate", "--noinput").returncode == 0
    created = run(
        checkout, "manage.py", "createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com",
        DJANGO_SUPERUSER_PASSWORD="Unusual-horse-9",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    doctor = run(checkout, "manage.py", "bitrix_doctor", "--skip-bitrix")
    assert "SECRET_KEY" not in doctor.stderr and "Couldn't import Django" not in doctor.stderr
    assert "Redis" in doctor.stdout  # it ran its checks (Redis is unreachable here: a FAIL, not a crash)

    # A second start keeps the developer's file.
    run(checkout, "-m", "devtools.dev_env", python=sys.executable)
    assert key.group(1) in env_file.read_text()
