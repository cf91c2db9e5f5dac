"""``python manage.py bitrix_worker_alive``: the liveness probe of a worker container.

Exit 0 while the worker on this host beats (or Redis cannot be asked), 1 when
its heartbeat is stale or missing; one line either way. See
``crmbridge.diagnostics.liveness``. Kubernetes: ``deploy/k8s/base/worker.yaml``
(a startup probe gives the worker time for its first beat).
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandParser

from crmbridge.diagnostics.liveness import worker_liveness
from crmbridge.redis_io.connection import get_redis


class Command(BaseCommand):
    help = "Exit 1 when the worker on this host has stopped beating (a liveness probe)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=None, help="host name the worker beats from (default: this host's)")

    def handle(self, *args, **options) -> None:
        client = get_redis(socket_timeout=3.0, connect_timeout=3.0, retries=False)
        result = worker_liveness(client, host=options["host"])
        self.stdout.write(f"{'alive' if result.alive else 'NOT ALIVE'}: {result.detail}")
        if not result.alive:
            sys.exit(1)
