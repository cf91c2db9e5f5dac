"""Helpers for worker tests: run a worker in-process or as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

from crmbridge.worker.config import WorkerConfig
from crmbridge.worker.runner import Worker

ROOT = Path(__file__).resolve().parents[2]

FAST = {
    "poll_interval": 0.05,
    "retry_base_seconds": 0.01,
    "retry_max_seconds": 0.05,
    "claim_idle_seconds": 2.0,
    "pause_probe_seconds": 0.2,
    "heartbeat_seconds": 0.5,
}


def fast_config(**overrides) -> WorkerConfig:
    return WorkerConfig.from_settings(**{**FAST, **overrides})


def run_worker_once(**overrides) -> int:
    """A real worker, in this process, until nothing is left to do."""
    return Worker(fast_config(**overrides), once=True).run()


def database_url() -> str:
    """The URL of the test database, for worker processes."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def worker_env(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "REDIS_STREAM_PREFIX": settings.REDIS_STREAM_PREFIX,
        "BITRIX_WEBHOOK_URL": settings.BITRIX_WEBHOOK_URL,
        "BITRIX_RATE_LIMIT_PER_SECOND": "1000",
        "BITRIX_RATE_LIMIT_BURST": "1000",
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "bitrixsync.settings",
    }
    env.update(extra)
    return env


def start_worker_process(*args: str, log_path: Path, **env: str) -> subprocess.Popen:
    """``manage.py run_bitrix_worker`` as a separate process, output to ``log_path``."""
    command = [
        sys.executable, str(ROOT / "manage.py"), "run_bitrix_worker",
        "--poll-interval", "0.1", "--retry-base", "0.05", "--retry-max", "0.2", "--claim-idle", "2",
        *args,
    ]  # fmt: skip
    log = open(log_path, "ab")  # noqa: SIM115 - closed by the process owner
    process = subprocess.Popen(command, cwd=ROOT, env=worker_env(**env), stdout=log, stderr=subprocess.STDOUT)
    STARTED.append(process)
    return process


# Every worker process a test started; the ``no_stray_workers`` fixture kills what is left.
STARTED: list[subprocess.Popen] = []


def kill_stray_workers() -> None:
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.wait(10)


def wait_for(condition, timeout: float, what: str) -> float:
    """Poll ``condition`` until true; fail naming ``what`` after ``timeout`` s. Returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"{what} not within {timeout}s"
        time.sleep(0.05)
    return time.monotonic() - start
