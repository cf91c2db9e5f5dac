"""``bitrix_resync`` matches users without a contact against the portal's existing customers (issue 20, item 7).

Portal behaviour from bitrix24-rest-facts.md, "CRM depth" (``crm.duplicate.findbycomm``).
Pinned: the per-user lines (README "Existing customers"), the warning when Redis refuses the
no-match note, and ``contact_adoption.backfill``'s groups (progress, one contact per user across them).
"""

from __future__ import annotations

import logging
from io import StringIO

import pytest
from django.core.management import call_command

from crmbridge.bitrix.client import BitrixClient
from crmbridge.redis_io import contact_counts, contact_lookups
from crmbridge.worker.contact_adoption import backfill
from tests.publishing.helpers import published

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def portal(sandbox, settings):
    client = BitrixClient(settings.BITRIX_WEBHOOK_URL)
    yield client
    client.close()


@pytest.fixture
def imported(django_user_model, settings, redis_client):
    """Users made while sync was off (an import before the integration existed)."""
    settings.BITRIX_ENABLED = False

    def make(name: str, **extra):
        return django_user_model.objects.create_user(
            username=name, email=extra.pop("email", f"{name}@example.com"), password="S3cure-pass-1", **extra
        )

    yield make
    settings.BITRIX_ENABLED = True


def resync(*args) -> str:
    out = StringIO()
    call_command("bitrix_resync", "--users", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_dry_run_prints_who_would_adopt_which_contact_and_changes_nothing(sandbox, portal, imported, redis_client):
    known = portal.add("contact", {"EMAIL": [{"VALUE": "Alice@X.com"}]})
    by_phone = portal.add("contact", {"PHONE": [{"VALUE": "+1 555 0100"}]})
    alice = imported("alice", email="alice@x.com")
    bob = imported("bob", email="bob@example.com", phone="+15550100")
    carl = imported("carl")

    output = resync("--dry-run")

    assert f"user {alice.pk} alice@x.com -> would adopt contact {known} (by e-mail)" in output
    assert f"user {bob.pk} bob@example.com -> would adopt contact {by_phone} (by phone)" in output
    assert f"user {carl.pk} carl@example.com -> would create a contact (no existing customer)" in output
    assert "would adopt 1 by e-mail and 1 by phone" in output
    assert "users (contacts): 3 to create, 0 to update" in output
    alice.refresh_from_db()
    assert alice.bitrix_contact_id is None and published(redis_client) == []
    assert contact_counts.read(redis_client)["adopted_email"] == 0


def test_resync_adopts_then_queues_updates_for_the_adopted(sandbox, portal, imported, redis_client):
    known = portal.add("contact", {"EMAIL": [{"VALUE": "dora@example.com"}]})
    dora = imported("dora")
    eve = imported("eve")

    output = resync()

    dora.refresh_from_db()
    assert dora.bitrix_contact_id == known
    assert f"user {dora.pk} dora@example.com -> adopted contact {known} (by e-mail)" in output
    assert sorted(published(redis_client)) == sorted(
        [("contact", "update", dora.pk, "resync"), ("contact", "create", eve.pk, "resync")]
    )
    assert contact_counts.read(redis_client)["adopted_email"] == 1


def test_a_backfill_of_many_users_costs_a_few_requests(sandbox, portal, imported):
    """1,200 users with e-mail and phone: 120 findbycomm commands in 3 requests, not 1,200 requests."""
    portal.add("contact", {"EMAIL": [{"VALUE": "u0500@example.com"}]})
    for i in range(1200):
        imported(f"u{i:04d}", phone=f"+1555{i:05d}")
    before = sandbox.stats()["requests"]

    output = resync("--dry-run")

    stats = sandbox.stats()
    assert stats["commands_by_method"]["crm.duplicate.findbycomm"] == 2 * 60
    assert stats["requests"] - before == 3 + 1  # 3 groups of 500 users, + 1 read of the matched contact
    assert "would adopt 1 by e-mail and 0 by phone" in output


def test_the_worker_does_not_look_up_again_whom_the_resync_just_looked_up(sandbox, portal, imported):
    """The backfill's lookups are not repeated by the worker's create (one grouped lookup, not two)."""
    from tests.worker.helpers import run_worker_once

    for name in ("fay", "gus", "hal"):
        imported(name)
    resync()
    looked_up = sandbox.stats()["commands_by_method"]["crm.duplicate.findbycomm"]

    run_worker_once()

    stats = sandbox.stats()
    assert stats["contacts"] == 3
    assert stats["commands_by_method"]["crm.duplicate.findbycomm"] == looked_up + 1  # + the worker's start check


def test_dry_run_names_a_user_without_email_by_phone_and_the_oldest_of_its_matches(sandbox, portal, imported):
    oldest = portal.add("contact", {"PHONE": [{"VALUE": "+1 555 0150"}]})
    portal.add("contact", {"PHONE": [{"VALUE": "+15550150"}]})
    pia = imported("pia", email="", phone="+15550150")

    lines = resync("--dry-run").splitlines()

    assert f"user {pia.pk} +15550150 -> would adopt contact {oldest} (by phone, oldest of 2)" in lines


def test_dry_run_says_when_a_user_has_neither_email_nor_phone(sandbox, portal, imported):
    quin = imported("quin", email="")

    lines = resync("--dry-run").splitlines()

    assert f"user {quin.pk} (no e-mail or phone) -> would create a contact (no existing customer)" in lines


def test_a_refused_no_match_note_is_a_warning_and_the_user_still_queued(sandbox, imported, redis_client, caplog):
    redis_client.set(contact_lookups.no_match_key(), "not a hash")
    rex = imported("rex")
    caplog.set_level(logging.WARNING, logger="crmbridge.worker")

    resync()

    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Could not note")]
    assert line.startswith("Could not note the users without an existing customer (the worker looks again): ")
    assert line.endswith("WRONGTYPE Operation against a key holding the wrong kind of value")
    assert published(redis_client) == [("contact", "create", rex.pk, "resync")]


def test_a_contact_linked_to_another_user_is_not_adopted(sandbox, portal, imported):
    """A household phone: the contact already belongs to one user, the other gets a new one."""
    theirs = portal.add("contact", {"PHONE": [{"VALUE": "+1 555 0170"}]})
    imported("sue", phone="+15550170", bitrix_contact_id=theirs)
    tom = imported("tom", phone="+15550170")

    lines = resync("--dry-run").splitlines()

    assert f"user {tom.pk} tom@example.com -> would create a contact (no existing customer)" in lines


def test_backfill_describes_what_it_did_for_each_user(sandbox, portal, imported):
    known = portal.add("contact", {"EMAIL": [{"VALUE": "uma@example.com"}]})
    uma, vic = imported("uma"), imported("vic")

    planned = list(backfill(portal, [uma, vic], dry_run=False))

    assert [p.describe(dry_run=False) for p in planned] == [
        f"user {uma.pk} uma@example.com -> adopted contact {known} (by e-mail)",
        f"user {vic.pk} vic@example.com -> will create a contact (no existing customer)",
    ]


def test_backfill_reports_progress_per_group(sandbox, portal, imported):
    progress = []

    list(
        backfill(
            portal, [imported(n) for n in ("wes", "xia", "yul")], dry_run=True, group=2, on_progress=progress.append
        )
    )

    assert progress == [2, 1]


def test_a_contact_claimed_in_an_earlier_group_is_not_taken_by_a_later_lower_user_id(sandbox, portal, imported):
    """One contact, one user across groups too, whatever order the users come in."""
    shared = portal.add("contact", {"PHONE": [{"VALUE": "+1 555 0180"}]})
    users = [imported("zed", phone="+15550180", pk=2), imported("abe", phone="+15550180", pk=1)]

    planned = list(backfill(portal, users, dry_run=True, group=1))

    assert [(p.user.pk, p.match and p.match.contact_id) for p in planned] == [(2, shared), (1, None)]
