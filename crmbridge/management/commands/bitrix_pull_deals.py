"""``python manage.py bitrix_pull_deals``: re-apply the current stage of every linked deal.

Run it after inbound events were lost (the endpoint answered 503 because Redis
was down: the portal does not resend). It queues one update event per linked
order; a running worker fetches the deals and sets the orders' statuses.
Nothing is sent to Bitrix, and running it again is harmless.
"""

from __future__ import annotations

import redis
from django.core.management.base import BaseCommand, CommandError

from crmbridge.inbound.pull import queue_pull
from crmbridge.redis_io import streams
from orders.models import Order


class Command(BaseCommand):
    help = "Queue an update event for every order linked to a deal, so that the worker re-applies its stage."

    def add_arguments(self, parser):
        parser.add_argument("--chunk-size", type=int, default=500, help="orders per Redis pipeline (default 500)")
        parser.add_argument("--dry-run", action="store_true", help="count, queue nothing")

    def handle(self, *args, **options):
        if options["chunk_size"] < 1:
            raise CommandError("--chunk-size must be at least 1")
        if options["dry_run"]:
            count = Order.objects.filter(bitrix_deal_id__isnull=False).count()
            self.stdout.write(f"Dry run: {count} linked order(s) would be pulled; nothing was queued.")
            return
        try:
            queued = queue_pull(chunk_size=options["chunk_size"])
        except redis.RedisError as exc:
            raise CommandError(f"Redis is unavailable ({type(exc).__name__}); nothing more was queued") from None
        self.stdout.write(
            f"Queued {queued} deal update event(s) to {streams.webhooks_stream()} (src=pull); "
            "the worker applies each deal's current stage to its order."
        )
