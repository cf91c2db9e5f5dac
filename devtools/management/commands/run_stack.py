"""``python manage.py run_stack``: the whole development stack in one foreground process.

Redis (started if none answers), the Bitrix24 sandbox (when BITRIX_WEBHOOK_URL
is empty), the worker and the web app on port 8000. ``./run.sh`` migrates and
then runs this. See ``devtools/dev_stack.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand

from devtools.dev_stack import DevStack


class Command(BaseCommand):
    help = "Run Redis, the Bitrix24 sandbox, the worker and the web app for development; Ctrl-C stops them all."
    requires_system_checks = []  # the children run their own checks; Redis may not be up yet

    def add_arguments(self, parser) -> None:
        parser.add_argument("--var-dir", type=Path, help="where started services keep their data (default: ./var)")

    def handle(self, *args, var_dir: Path | None = None, **options) -> None:
        code = DevStack(out=self.stdout._out, var_dir=var_dir).run()
        if code:
            sys.exit(code)
