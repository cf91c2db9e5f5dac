"""``python manage.py bitrix_trim_streams [--retention SECONDS]``: trim acknowledged stream entries.

The worker does this every minute; see ``crmbridge.worker.trimming`` for the rule
(never an entry some consumer group has not acknowledged).
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from crmbridge.redis_io.connection import get_redis
from crmbridge.worker.trimming import trim_streams


class Command(BaseCommand):
    help = "Delete stream entries every consumer group has acknowledged and that are older than the retention."

    def add_arguments(self, parser):
        parser.add_argument(
            "--retention",
            type=int,
            default=None,
            help=f"seconds to keep acknowledged entries (default BITRIX_STREAM_RETENTION_SECONDS, "
            f"{settings.BITRIX_STREAM_RETENTION_SECONDS})",
        )

    def handle(self, *args, retention: int | None, **options):
        for stream, removed in trim_streams(get_redis(), retention_seconds=retention).items():
            self.stdout.write(f"{stream}: trimmed {removed} entr{'y' if removed == 1 else 'ies'}")
