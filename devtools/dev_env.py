"""The development ``.env`` that ``./run.sh`` writes on its first start.

Without it, commands in a second terminal (``python manage.py createsuperuser``,
``bitrix_doctor``) would run with ``DEBUG`` off and no ``SECRET_KEY`` and stop,
as production must. ``./run.sh`` runs ``python -m devtools.dev_env`` before
anything else: when the checkout has no ``.env``, it writes one (mode 0600) with
``DEBUG=true`` and a ``SECRET_KEY`` generated for this checkout, and says so. An
existing ``.env`` is never touched. Production never runs ``./run.sh``: without
this file and without ``SECRET_KEY``, start-up still refuses
(``bitrixsync/production.py``), and docker compose sets ``DEBUG=false`` whatever
the file says.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

HEADER = (
    "# Development settings written by ./run.sh on its first start (devtools/dev_env.py).\n"
    "# Every variable and its meaning: .env.example. Production: .env.production.example.\n"
)


def ensure_dev_env(base_dir: Path) -> Path | None:
    """Write ``<base_dir>/.env`` for development unless one exists; the path written, or ``None``."""
    path = Path(base_dir) / ".env"
    contents = f"{HEADER}DEBUG=true\nSECRET_KEY={secrets.token_urlsafe(50)}\n"
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None
    with os.fdopen(descriptor, "w") as handle:
        handle.write(contents)
    return path


def main() -> int:
    written = ensure_dev_env(Path(__file__).resolve().parent.parent)
    if written is not None:
        print(f"run.sh: wrote {written.name} for development (DEBUG=true, a SECRET_KEY generated for this checkout)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
