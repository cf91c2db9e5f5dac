"""``python manage.py bitrix_resync``: queue operations for records signals never saw.

Examples::

    manage.py bitrix_resync                       # every order and user
    manage.py bitrix_resync --orders --missing-only
    manage.py bitrix_resync --users --since 2025-01-01 --dry-run
    manage.py bitrix_resync --orders --outdated --dry-run   # deals whose rows or pipeline changed

Deals already synced are brought up to date by the worker when it syncs them
(product rows, pipeline, custom fields: ``crmbridge.publishing.deal_backfill``);
the command prints what that changes, per deal, before it queues (or instead of
queueing, with ``--dry-run``).

Safe to run again: the worker syncs each record's current state, so a
duplicate message only repeats an update.

Users without a contact are first matched against the portal's existing
customers (``BITRIX_CONTACT_MATCH``; 500 users per lookup request): an adopted
contact's ID is written back, so the user is queued as an update. ``--dry-run``
prints, per user, the contact it would adopt (or that one would be created).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from crmbridge import entities as registry
from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.contact_match import matching_modes
from crmbridge.bitrix.errors import BitrixError
from crmbridge.publishing import deal_backfill
from crmbridge.publishing.outbox import waiting_entries
from crmbridge.publishing.resync import queue_resync_for, resync, resync_plan, selection
from crmbridge.worker.contact_adoption import backfill


class Command(BaseCommand):
    help = "Queue create (no Bitrix ID yet) or update operations for orders and/or users, in chunks."

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--orders", action="store_true", help="orders only")
        which.add_argument("--users", action="store_true", help="users only")
        parser.add_argument("--missing-only", action="store_true", help="only records without a Bitrix ID")
        parser.add_argument("--since", type=parse_date, help="only records changed since YYYY-MM-DD (users: joined)")
        parser.add_argument("--chunk-size", type=int, default=500, help="records per transaction (default 500)")
        parser.add_argument("--dry-run", action="store_true", help="count and show what would change, queue nothing")
        parser.add_argument(
            "--outdated",
            action="store_true",
            help="orders: only those without a deal or whose deal's rows, pipeline or custom fields would change",
        )

    def handle(self, *args, **options):
        if options["chunk_size"] < 1:
            raise CommandError("--chunk-size must be at least 1")
        entities = ["deal"] if options["orders"] else ["contact"] if options["users"] else list(registry.NAMES)
        selection = {"entities": entities, "missing_only": options["missing_only"], "since": options["since"]}
        if "contact" in entities and matching_modes():
            self.match_existing_customers(since=options["since"], dry_run=options["dry_run"])
        plan = resync_plan(**selection)
        outdated = self.deal_changes(selection) if "deal" in entities and not options["missing_only"] else None
        if options["outdated"] and outdated is not None:
            plan["deal"]["update"] = len(outdated)
        for entity, ops in plan.items():
            label = registry.get(entity).plural_label
            self.stdout.write(f"{label}: {ops['create']} to create, {ops['update']} to update")
        total = sum(ops["create"] + ops["update"] for ops in plan.values())
        if options["dry_run"]:
            self.stdout.write(f"Dry run: {total} operation(s) would be queued; nothing was.")
            return
        with tqdm(total=total, unit="record", desc="Queuing", file=sys.stderr, disable=None) as bar:
            if options["outdated"] and outdated is not None:
                queued = self.queue_outdated(selection, outdated, options["chunk_size"], bar.update)
            else:
                queued = resync(**selection, chunk_size=options["chunk_size"], on_progress=bar.update)
        self.report(queued)

    def deal_changes(self, options: dict) -> list[int]:
        """Print what syncing the already-synced deals changes; the orders whose deal would change."""
        orders = selection("deal", since=options["since"])
        count = orders.filter(bitrix_deal_id__isnull=False).count()
        with tqdm(total=count, unit="deal", desc="Checking deals", file=sys.stderr, disable=None) as bar:
            changes = deal_backfill.synced_deal_changes(orders)
            summary, changed = deal_backfill.summarize(_counted(changes, bar.update))
        for line in summary.lines():
            self.stdout.write(line)
        return changed

    @staticmethod
    def queue_outdated(options: dict, outdated: list[int], chunk_size: int, progress) -> int:
        """Orders without a deal, then those whose deal would change (contacts as usual)."""
        others = [e for e in options["entities"] if e != "deal"]
        missing = {**options, "entities": ["deal"], "missing_only": True}
        queued = resync(**missing, chunk_size=chunk_size, on_progress=progress)
        for start in range(0, len(outdated), chunk_size):
            chunk = outdated[start : start + chunk_size]
            queued += queue_resync_for("deal", chunk, src="resync")
            progress(len(chunk))
        if others:
            queued += resync(**{**options, "entities": others}, chunk_size=chunk_size, on_progress=progress)
        return queued

    def match_existing_customers(self, *, since: date | None, dry_run: bool) -> None:
        """Users without a contact: adopt the portal's existing customer where there is one (see the docstring)."""
        users = users_to_match(since)
        total = users.count()
        if not total:
            return
        try:
            client = BitrixClient.from_settings()
        except ImproperlyConfigured as exc:
            self.stdout.write(f"Existing customers not looked up: {exc}")
            return
        found = {"email": 0, "phone": 0, "ambiguous": 0, "none": 0}
        try:
            with tqdm(total=total, unit="user", desc="Matching", file=sys.stderr, disable=None) as bar:
                for planned in backfill(
                    client, users.iterator(chunk_size=500), dry_run=dry_run, on_progress=bar.update
                ):
                    self._tally(found, planned)
                    if dry_run or planned.match is not None:
                        self.stdout.write(planned.describe(dry_run=dry_run))
        except BitrixError as exc:
            self.stdout.write(f"Existing customers not looked up ({exc}); the worker looks each new user up.")
            return
        finally:
            client.close()
        verb = "would adopt" if dry_run else "adopted"
        self.stdout.write(
            f"Existing customers: {verb} {found['email']} by e-mail and {found['phone']} by phone "
            f"({found['ambiguous']} with several matches: the oldest); {found['none']} without a match."
        )

    @staticmethod
    def _tally(found: dict[str, int], planned) -> None:
        if planned.match is None:
            found["none"] += 1
            return
        found[planned.match.by] += 1
        found["ambiguous"] += int(planned.match.ambiguous)

    def report(self, queued: int) -> None:
        left = waiting_entries().count()
        self.stdout.write(
            f"Queued {queued} operation(s) (src=resync). Running this again is safe: the worker syncs "
            "each record's current state, so a duplicate message only repeats an update."
        )
        if left:
            self.stdout.write(
                f"{left} operation(s) are still in the outbox (Redis unreachable?); the worker's relay or "
                "`manage.py bitrix_relay_outbox` publishes them."
            )


def _counted(items, progress):
    for item in items:
        progress(1)
        yield item


def parse_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date like 2025-01-31, got {value!r}") from None


def users_to_match(since: date | None):
    """Users the resync would create a contact for, oldest first (the lower ID wins a shared contact)."""
    return selection("contact", missing_only=True, since=since).order_by("pk")
