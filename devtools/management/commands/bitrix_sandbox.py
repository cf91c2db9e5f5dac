"""``manage.py bitrix_sandbox``: a local Bitrix24 portal to sync against without a real one.

    python manage.py bitrix_sandbox --port 8001 --rate 2 --burst 50
    BITRIX_WEBHOOK_URL=http://127.0.0.1:8001/rest/1/sandbox-secret-code/

Runs until Ctrl+C or SIGTERM. The ``/_sandbox/`` control endpoints have no
authentication: keep the default ``--host 127.0.0.1`` unless you know why not.
They refuse cross-site requests (a foreign Host or Origin, see
``devtools.sandbox.control.cross_site_reason``).
"""

from __future__ import annotations

import json
import signal
import threading

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bitrixsync.env_config import env_int, env_str
from crmbridge.bitrix.webhook_url import redact_url
from devtools.sandbox.portal_setup import checked_setup
from devtools.sandbox.server import SandboxServer


class Command(BaseCommand):
    help = "Run a local Bitrix24 sandbox portal (REST webhook API, rate limit, faults, events)."
    # It runs precisely when the project is not configured for a portal: the
    # project's checks (e.g. a missing BITRIX_WEBHOOK_URL) must not stop it.
    requires_system_checks = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
        parser.add_argument(
            "--port",
            type=int,
            default=env_int("BITRIX_SANDBOX_PORT", 8001, minimum=0, maximum=65535),
            help="port (default BITRIX_SANDBOX_PORT or 8001; 0 picks a free one)",
        )
        parser.add_argument(
            "--code",
            default=env_str("BITRIX_SANDBOX_CODE", "sandbox-secret-code"),
            help="webhook code (default BITRIX_SANDBOX_CODE or sandbox-secret-code)",
        )
        parser.add_argument("--user-id", default="1", help="webhook user id (default 1)")
        parser.add_argument("--rate", type=float, default=2.0, help="leaky bucket drain, requests/s (default 2)")
        parser.add_argument("--burst", type=int, default=50, help="leaky bucket size (default 50)")
        parser.add_argument("--no-limit", action="store_true", help="no rate limit at all")
        parser.add_argument("--db", default=None, help="keep records in this SQLite file (default: memory)")
        parser.add_argument("--manager-code", default=None, help="enable a second webhook /rest/2/<code>/")
        parser.add_argument("--event-handler-url", default=None, help="POST outbound events (ONCRMDEAL*) here")
        parser.add_argument(
            "--application-token",
            default=env_str("BITRIX_INBOUND_TOKEN", ""),
            # Prefer the environment: a command line is visible to every local user (`ps`).
            help="auth[application_token] sent with events (default BITRIX_INBOUND_TOKEN)",
        )

        parser.add_argument(
            "--setup", default=None, help="JSON file: pipelines, stages, custom fields (see portal_setup.py)"
        )

    def handle(self, *args, **options) -> None:
        setup = read_setup(options["setup"]) if options["setup"] else None
        server = SandboxServer(
            options["host"],
            options["port"],
            user_id=options["user_id"],
            code=options["code"],
            rate=None if options["no_limit"] else options["rate"],
            burst=None if options["no_limit"] else options["burst"],
            db_path=options["db"],
            manager_code=options["manager_code"],
            handler_url=options["event_handler_url"],
            application_token=options["application_token"],
            setup=setup,
        ).start()
        limit = "no limit" if options["no_limit"] else f"{options['rate']:g}/s, burst {options['burst']}"
        self.stdout.write(f"Bitrix24 sandbox listening on {server.base_url} ({limit})")
        self.stdout.write(f"Webhook URL: {redact_url(server.webhook_url)} (**** = --code / BITRIX_SANDBOX_CODE)")
        self.stdout.write(f"Control: {server.base_url}/_sandbox/stats (no authentication; same-machine requests only)")
        self.stdout.flush()
        self._wait_for_signal()
        server.stop()
        self.stdout.write("Sandbox stopped")

    @staticmethod
    def _wait_for_signal() -> None:
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        stop.wait()


def read_setup(path: str) -> dict:
    """The ``--setup`` file, checked: one line naming the file and the wrong part, not a traceback."""
    try:
        with open(path, encoding="utf-8") as handle:
            setup = json.load(handle)
        checked_setup(setup)
    except (OSError, ValueError) as exc:  # unreadable, not JSON (a ValueError), or a SetupError
        raise CommandError(f"--setup {path}: {exc}") from None
    return setup
