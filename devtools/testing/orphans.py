"""Servers that tests start die with the test process, even when it is killed.

mutmut (scripts/mutation.sh) kills a test run that hangs under a mutant with SIGKILL: no
fixture's cleanup runs, and each run's private redis-servers and sentinels stayed behind,
hundreds over a long run. Linux's parent-death signal ends them with their parent.
"""

from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1
# Looked up here, not in the child: between fork and exec the child should do as little as it can.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """``preexec_fn`` for ``subprocess.Popen``: SIGTERM the child when the process that started it ends.

    The signal follows the *thread* that forked: start servers from the main thread (every test does).
    A no-op where ``prctl`` does not exist (not Linux).
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
