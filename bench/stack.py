"""A private, throw-away copy of the whole system for benchmarks and chaos runs.

Each ``BenchStack`` has its own redis-server on a free port, its own SQLite
file (copied from a migrated template) or a database URL the caller made for
it (``database_url``: migrated here, e.g. a temporary PostgreSQL database), and
its own Bitrix sandbox process. Nothing here touches a server it did not start.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devtools.testing.bench_env import BENCH_ENV  # noqa: E402
from devtools.testing.ports import free_port, wait_for_port  # noqa: E402
from devtools.testing.redis_server import PrivateRedis  # noqa: E402

SANDBOX_CODE = "bench-secret-code"
_TEMPLATE: Path | None = None


def manage(*args: str, env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=env, check=True, **kwargs)


def _migrated_template() -> Path:
    """Migrate once per benchmark run; every stack starts from a copy.

    In a directory of this run's own: a template shared by path in /tmp was migrated
    by whichever checkout ran last (another branch's migrations: a NOT NULL column
    this code never sets, and every POST /orders answered 500).
    """
    global _TEMPLATE
    if _TEMPLATE is None:
        _TEMPLATE = Path(tempfile.mkdtemp(prefix="bitrixsync-bench-template-")) / "template.sqlite3"
        env = {**os.environ, **BENCH_ENV, "DATABASE_URL": f"sqlite:///{_TEMPLATE}", "BITRIX_ENABLED": "false"}
        manage("migrate", "--noinput", "-v", "0", env=env)
    return _TEMPLATE


class BenchStack:
    def __init__(
        self, *, rate: float | None, burst: int | None, appendonly: bool = False, database_url: str | None = None
    ) -> None:
        self.rate, self.burst = rate, burst
        self.dir = Path(tempfile.mkdtemp(prefix="bitrixsync-bench-"))
        self.redis = PrivateRedis(appendonly=appendonly)
        self.db_path = self.dir / "db.sqlite3"
        self.database_url = database_url or f"sqlite:///{self.db_path}"
        self.migrate = database_url is not None
        self.sandbox_port = free_port()
        self.sandbox: subprocess.Popen | None = None
        self.processes: list[subprocess.Popen] = []

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> BenchStack:
        self.start_redis()
        if self.migrate:
            manage("migrate", "--noinput", "-v", "0", env=self.env(BITRIX_ENABLED="false"))
        else:
            shutil.copy(_migrated_template(), self.db_path)
        self.sandbox = self.spawn(
            "bitrix_sandbox", "--port", str(self.sandbox_port), "--code", SANDBOX_CODE, *self._limit_args(),
            log="sandbox.log",
        )  # fmt: skip
        wait_for_port(self.sandbox_port, timeout=30)
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.stop_redis()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start_redis(self) -> None:
        self.redis.start()

    def stop_redis(self) -> None:
        self.redis.cleanup()

    def _limit_args(self) -> list[str]:
        if self.rate is None:
            return ["--no-limit"]
        return ["--rate", str(self.rate), "--burst", str(self.burst)]

    # -- processes -------------------------------------------------------------
    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}/rest/1/{SANDBOX_CODE}/"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    def env(self, **extra: str) -> dict[str, str]:
        rate = self.rate if self.rate is not None else 100000
        burst = self.burst if self.burst is not None else 100000
        return {
            **os.environ,
            **BENCH_ENV,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis.url,
            "BITRIX_WEBHOOK_URL": self.webhook_url,
            "BITRIX_RATE_LIMIT_PER_SECOND": str(rate),
            "BITRIX_RATE_LIMIT_BURST": str(burst),
            "BITRIX_ENABLED": "true",
            "BITRIX_WORKER_ENABLED": "true",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def spawn(self, *args: str, log: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        out = open(self.dir / log, "ab")  # noqa: SIM115 - lives as long as the process
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT, env=env or self.env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.processes.append(process)
        return process

    def start_worker(self, *args: str, name: str = "worker", **env: str) -> subprocess.Popen:
        return self.spawn("run_bitrix_worker", *args, log=f"{name}.log", env=self.env(**env))

    # -- reading results ---------------------------------------------------------
    def count_synced(self) -> tuple[int, int]:
        """(orders with a deal ID, users with a contact ID), read straight from SQLite."""
        with sqlite3.connect(self.db_path, timeout=30) as db:
            orders = db.execute("SELECT COUNT(*) FROM orders_order WHERE bitrix_deal_id IS NOT NULL").fetchone()[0]
            users = db.execute("SELECT COUNT(*) FROM accounts_user WHERE bitrix_contact_id IS NOT NULL").fetchone()[0]
        return orders, users

    def sandbox_stats(self) -> dict:
        import requests

        return requests.get(f"{self.sandbox_url}/_sandbox/stats", timeout=10).json()

    def wait_synced(self, orders: int, users: int, *, timeout: float) -> float:
        start = time.monotonic()
        while self.count_synced() != (orders, users):
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"synced {self.count_synced()} of {(orders, users)} in {timeout}s")
            time.sleep(0.1)
        return time.monotonic() - start
