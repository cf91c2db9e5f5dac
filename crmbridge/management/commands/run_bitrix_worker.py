"""``python manage.py run_bitrix_worker``: consume the operations stream and sync to Bitrix24."""

from __future__ import annotations

import sys

from django.conf import settings
from django.core.management.base import BaseCommand

from crmbridge.worker.config import WorkerConfig
from crmbridge.worker.runner import Worker


class Command(BaseCommand):
    help = "Consume bitrix:operations with the bitrix_workers group and sync orders and users to Bitrix24."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="process what is there, then exit (tests, cron)")
        parser.add_argument("--batch-size", type=int, help="messages per read (default: BITRIX_WORKER_BATCH_SIZE)")
        parser.add_argument("--poll-interval", type=float, help="seconds a read blocks when idle")
        parser.add_argument("--max-retries", type=int, help="retries before a message goes to the dead letters")
        parser.add_argument("--claim-idle", type=float, help="seconds before a dead consumer's entries are taken over")
        parser.add_argument("--retry-base", type=float, help="first retry delay in seconds (doubles each retry)")
        parser.add_argument("--retry-max", type=float, help="longest retry delay in seconds")
        parser.add_argument("--pause-probe", type=float, help="seconds between portal probes while paused")
        parser.add_argument("--name", help="consumer name (default worker_<host>-<pid>)")
        parser.add_argument(
            "--commands-per-request", type=int, help="Bitrix commands per request: 50 (batch, default) .. 1"
        )

    def handle(self, *args, **options):
        if not settings.BITRIX_WORKER_ENABLED:
            self.stdout.write("Bitrix worker is disabled (BITRIX_WORKER_ENABLED=false); not consuming.")
            return
        config = WorkerConfig.from_settings(
            batch_size=options["batch_size"],
            poll_interval=options["poll_interval"],
            max_retries=options["max_retries"],
            claim_idle_seconds=options["claim_idle"],
            retry_base_seconds=options["retry_base"],
            retry_max_seconds=options["retry_max"],
            pause_probe_seconds=options["pause_probe"],
            commands_per_request=options["commands_per_request"],
        )
        code = Worker(config, name=options["name"], once=options["once"]).run()
        if code:
            sys.exit(code)
