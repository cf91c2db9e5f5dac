"""CPU seconds per role (web, workers, redis, postgres, sandbox, load generator) over a bench run.

Read from ``/proc/<pid>/stat`` (user + system time; Linux only, no psutil).
A role is a function that lists its process IDs *now*: gunicorn may replace a
worker and PostgreSQL starts a backend per new connection, so the IDs are
listed again at every sample (once a second). A process first seen after the
start counts from zero (it was born during the run); one that exits between
two samples loses at most the last second of its time, which is why the
samples are frequent. PostgreSQL counts only the backends connected to the
bench's own database (``pg_stat_activity``), not the server's shared
processes (checkpointer, WAL writer), which also serve other users.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (a gunicorn master's workers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            found.append(int(stat.parent.name))
    return found


class CpuMeter:
    """Samples every role's processes in a thread between ``start()`` and ``stop()``."""

    def __init__(self, roles: dict[str, Callable[[], list[int]]], *, interval: float = 1.0) -> None:
        self.roles = roles
        self.interval = interval
        self.baseline: dict[int, float] = {}
        self.last: dict[str, dict[int, float]] = {role: {} for role in roles}
        self.loads: list[float] = []  # the 1-minute load average at each sample
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-meter", daemon=True)

    def start(self) -> CpuMeter:
        for pids in self._pids().values():
            for pid in pids:
                self.baseline[pid] = cpu_seconds(pid) or 0.0
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        """CPU seconds each role used since ``start()``."""
        self._stop.set()
        self._thread.join()
        self._sample()
        return {
            role: sum(max(0.0, used - self.baseline.get(pid, 0.0)) for pid, used in seen.items())
            for role, seen in self.last.items()
        }

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _pids(self) -> dict[str, list[int]]:
        listed = {}
        for role, source in self.roles.items():
            try:
                listed[role] = source()
            except Exception:  # a source failing (e.g. PostgreSQL busy) skips one sample only
                listed[role] = []
        return listed

    def _sample(self) -> None:
        self.loads.append(load_average()[0])
        for role, pids in self._pids().items():
            for pid in pids:
                used = cpu_seconds(pid)
                if used is not None:
                    self.last[role][pid] = used


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)
