"""Servers the tests start end with the test process, even one killed with SIGKILL (devtools/testing/orphans.py).

mutmut kills a hung test run that way; before, its redis-servers stayed behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent

KILLED_PARENT = """
import os, signal, sys
from devtools.testing.redis_server import PrivateRedis
server = PrivateRedis().start()
print(server.process.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_private_redis_ends_with_the_process_that_started_it_even_when_killed():
    run = subprocess.run([sys.executable, "-c", KILLED_PARENT], cwd=ROOT, capture_output=True, text=True, timeout=60)
    pid = int(run.stdout.strip())

    assert run.returncode == -9
    try:
        wait_for(lambda: not alive(pid), 10, "the orphaned redis-server to end")
    finally:
        if alive(pid):
            os.kill(pid, 9)
