"""``.env.stack``: the development stack's settings, for the other commands of the same checkout.

While ``./run.sh`` (``manage.py run_stack``) runs, it writes the values its
children run with (the sandbox's webhook URL, the Redis it started or found,
the database, its ports) to ``<checkout>/.env.stack`` (git-ignored, mode 0600:
it holds the webhook code). Settings read it after ``.env``, so that
``manage.py bitrix_doctor``, ``createsuperuser``, ``run_bitrix_worker --once``
or ``bitrix_resync`` in a second terminal talk to the running stack.

Precedence: real environment variables > ``.env.stack`` > ``.env`` > defaults.

Stale files: the stack removes the file when it stops. A stack killed with
SIGKILL cannot; the file names the stack's PID, and settings ignore it once no
process has that PID (the next run_stack overwrites it). A second run_stack of
the same checkout refuses to start while the first one's file is live.

``STACK_ENV_FILE`` overrides the location; set to the empty string, no file is
written or read (``./test.sh`` does that, so that tests never see a developer's
running stack).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

FILE_NAME = ".env.stack"
PID_KEY = "RUN_STACK_PID"
HEADER = (
    "# Written by `python manage.py run_stack` (./run.sh) while it runs; removed when it stops.\n"
    "# Settings of this checkout read it after .env (environment variables win). Do not edit.\n"
)


def stack_env_path(base_dir: Path) -> Path | None:
    """Where the file is: ``STACK_ENV_FILE``, else ``<base_dir>/.env.stack``; ``None`` when switched off."""
    override = os.environ.get("STACK_ENV_FILE")
    if override is None:
        return Path(base_dir) / FILE_NAME
    return Path(override) if override.strip() else None


def read_stack_env(path: Path | None) -> dict[str, str]:
    """The file's variables (``RUN_STACK_PID`` included), or ``{}`` when missing or unreadable."""
    if path is None:
        return {}
    try:
        text = path.read_text()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            values[name.strip()] = value.strip()
    return values


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def live_stack_pid(path: Path | None) -> int | None:
    """The PID of the stack that wrote ``path`` if it is still running, else ``None``."""
    raw = read_stack_env(path).get(PID_KEY, "")
    pid = int(raw) if raw.isdigit() else 0
    return pid if pid > 0 and pid_alive(pid) else None


def apply_stack_env(base_dir: Path, *, keep: Iterable[str]) -> dict[str, str]:
    """Put a live stack's variables into ``os.environ``, except the names in ``keep`` (the real environment).

    Called by settings after ``.env`` was read: the file's values replace the
    ones from ``.env``. Returns what was applied.
    """
    path = stack_env_path(base_dir)
    if live_stack_pid(path) is None:
        return {}
    keep = set(keep)
    applied = {k: v for k, v in read_stack_env(path).items() if k != PID_KEY and k not in keep}
    os.environ.update(applied)
    return applied


def write_stack_env(path: Path, values: Mapping[str, str], *, pid: int) -> None:
    """Write ``values`` (empty ones left out) and ``pid``, readable by this user only."""
    lines = [f"{PID_KEY}={pid}", *(f"{k}={v}" for k, v in values.items() if v and "\n" not in v)]
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(HEADER + "\n".join(lines) + "\n")
    os.replace(temporary, path)  # readers never see half a file


def remove_stack_env(path: Path, *, pid: int) -> None:
    """Remove the file if this process wrote it (never another stack's)."""
    if read_stack_env(path).get(PID_KEY) == str(pid):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
