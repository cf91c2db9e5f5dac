"""``python manage.py bitrix_relay_outbox [--loop] [--interval 1.0]``: publish what the outbox kept.

The worker relays the outbox on its own; this command is for when no worker
runs (or to drain a backlog now). Without ``--loop`` it relays until the outbox
is empty or Redis fails, then exits.
"""

from __future__ import annotations

import logging
import signal
import time

from django.core.management.base import BaseCommand
from django.db import DatabaseError, close_old_connections

from crmbridge.publishing.outbox import relay_outbox, waiting_entries

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Publish operations left in the outbox (Redis was down, or a process died after commit) to their streams."

    def add_arguments(self, parser):
        parser.add_argument("--loop", action="store_true", help="keep relaying until SIGTERM/SIGINT")
        parser.add_argument("--interval", type=float, default=1.0, help="seconds to wait when idle (default 1.0)")
        parser.add_argument("--limit", type=int, default=500, help="entries per batch (default 500)")

    def handle(self, *args, loop: bool, interval: float, limit: int, **options):
        self.stopping = False
        total = self.run_loop(interval, limit) if loop else self.drain(limit)
        left = waiting_entries().count()
        self.stdout.write(f"Relayed {total} operation(s); {left} left in the outbox.")

    def run_loop(self, interval: float, limit: int) -> int:
        previous = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            total = 0
            while not self.stopping:
                try:
                    total += self.drain(limit)
                except DatabaseError:  # the database restarting: keep the relay alive
                    logger.exception("[QUEUE] Outbox relay could not read the outbox; retrying in %s s", interval)
                close_old_connections()
                self.wait(interval)
            return total
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def wait(self, seconds: float) -> None:
        """Sleep in short steps so that a stop request is honoured quickly."""
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, seconds))

    def drain(self, limit: int) -> int:
        """Relay batches until one comes back short (outbox empty, rows claimed by others, or Redis down)."""
        total = 0
        while not self.stopping:
            relayed = relay_outbox(limit=limit)
            total += relayed
            if relayed < limit:
                return total
        return total

    def stop(self, signum, frame) -> None:
        self.stopping = True
