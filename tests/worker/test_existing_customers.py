"""Existing customers (issue 20, item 1): the worker adopts the portal's contact instead of adding a second one.

Portal behaviour from bitrix24-rest-facts.md, "CRM depth": ``crm.duplicate.findbycomm``
and the multi-value field semantics (an item without ``ID`` is added). Also pinned: the INFO
line naming the adopted contact, the user and how it was found; the ERROR and WARNING lines of a
failed lookup, of counters Redis refuses and of a start check that breaks.
"""

from __future__ import annotations

import logging

import pytest

from accounts.models import User
from crmbridge.bitrix.client import BitrixClient
from crmbridge.redis_io import contact_counts, streams
from crmbridge.redis_io.connection import get_redis
from crmbridge.worker.contact_adoption import start_lookup_check
from orders.models import Order
from tests.worker.helpers import run_worker_once

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def portal(sandbox, settings):
    client = BitrixClient(settings.BITRIX_WEBHOOK_URL)
    yield client
    client.close()


def sales_contact(portal, *, emails=(), phones=(), name="Sales", originator=None, origin=None) -> int:
    """A contact the sales team keeps in the portal (no ORIGINATOR_ID unless given)."""
    fields = {
        "NAME": name,
        "EMAIL": [{"VALUE": e, "VALUE_TYPE": "HOME"} for e in emails],
        "PHONE": [{"VALUE": p, "VALUE_TYPE": "MOBILE"} for p in phones],
    }
    if originator:
        fields.update(ORIGINATOR_ID=originator, ORIGIN_ID=origin)
    return portal.add("contact", fields)


def make_user(django_user_model, name: str, *, email: str = "", phone: str = "", **extra) -> User:
    return django_user_model.objects.create_user(
        username=name, email=email, phone=phone, password="S3cure-pass-1", first_name=name.capitalize(), **extra
    )


def counts() -> dict[str, int]:
    return contact_counts.read(get_redis())


def contact(sandbox, contact_id: int) -> dict:
    return next(c for c in sandbox.records("contact") if int(c["ID"]) == contact_id)


def values(record: dict, name: str) -> list[str]:
    return [e["VALUE"] for e in record.get(name, [])]


def test_a_customer_known_by_email_is_adopted_updated_and_linked_to_the_deal(sandbox, portal, django_user_model):
    existing = sales_contact(portal, emails=["other@shop.com", "ALICE@Example.com"], phones=["+1 555 0100"])
    alice = make_user(django_user_model, "alice", email="alice@example.com")
    order = Order.objects.create(owner=alice, service_id="cnc-milling", quantity=2)

    assert run_worker_once() == 0

    alice.refresh_from_db()
    order.refresh_from_db()
    assert alice.bitrix_contact_id == existing
    assert sandbox.stats()["contacts"] == 1  # no second contact
    adopted = contact(sandbox, existing)
    assert adopted["NAME"] == "Alice"
    # bitrix24-rest-facts.md, CRM depth: items without ID are added, so nothing already there is sent again.
    assert values(adopted, "EMAIL") == ["other@shop.com", "ALICE@Example.com"]
    assert values(adopted, "PHONE") == ["+1 555 0100"]
    assert adopted.get("ORIGINATOR_ID") is None and adopted.get("ORIGIN_ID") is None  # stays the sales team's
    deal = next(d for d in sandbox.records("deal") if int(d["ID"]) == order.bitrix_deal_id)
    assert str(deal["CONTACT_ID"]) == str(existing)
    assert counts()["adopted_email"] == 1


def test_a_customer_known_by_phone_gets_the_missing_email_added(sandbox, portal, django_user_model):
    existing = sales_contact(portal, emails=["boss@corp.com"], phones=["+7 (812) 555-01-02 #4048"])
    bob = make_user(django_user_model, "bob", email="bob@example.com", phone="+78125550102")

    run_worker_once()

    bob.refresh_from_db()
    assert bob.bitrix_contact_id == existing
    adopted = contact(sandbox, existing)
    assert values(adopted, "EMAIL") == ["boss@corp.com", "bob@example.com"]  # added, theirs kept
    assert values(adopted, "PHONE") == ["+7 (812) 555-01-02 #4048"]  # the same number: not added again
    numbers = counts()
    assert (numbers["adopted_phone"], numbers["adopted_email"], numbers["created"]) == (1, 0, 0)


def test_several_matches_adopt_the_oldest_and_count_the_ambiguity(sandbox, portal, django_user_model):
    oldest = sales_contact(portal, emails=["carol@example.com"])
    sales_contact(portal, emails=["Carol@example.com"])
    carol = make_user(django_user_model, "carol", email="carol@example.com")

    run_worker_once()

    carol.refresh_from_db()
    assert carol.bitrix_contact_id == oldest
    numbers = counts()
    assert (numbers["adopted_email"], numbers["ambiguous"]) == (1, 1)


def test_no_match_creates_a_contact_and_counts_it(sandbox, portal, django_user_model):
    sales_contact(portal, emails=["someone@else.com"], phones=["+1 999"])
    dave = make_user(django_user_model, "dave", email="dave@example.com", phone="+1 555 0199")

    run_worker_once()

    dave.refresh_from_db()
    created = contact(sandbox, dave.bitrix_contact_id)
    assert created["ORIGIN_ID"] == f"user-{dave.pk}" and created["ORIGINATOR_ID"] == "bitrixsync"
    assert counts()["created"] == 1


@pytest.mark.parametrize(("setting", "adopted"), [(("email",), False), ((), False), (("phone",), True)])
def test_the_setting_narrows_or_turns_off_the_lookup(sandbox, portal, django_user_model, settings, setting, adopted):
    existing = sales_contact(portal, phones=["+1 555 0123"])
    erin = make_user(django_user_model, "erin", email="erin@example.com", phone="+15550123")
    settings.BITRIX_CONTACT_MATCH = setting

    run_worker_once()

    erin.refresh_from_db()
    assert (erin.bitrix_contact_id == existing) is adopted
    assert sandbox.stats()["contacts"] == (1 if adopted else 2)
    if not setting:
        assert "crm.duplicate.findbycomm" not in sandbox.stats()["commands_by_method"]


def test_a_contact_of_another_user_is_never_taken(sandbox, portal, django_user_model):
    """Two users sharing a phone: the second one gets its own contact."""
    shared = "+1 555 0777"
    first = make_user(django_user_model, "first", email="first@example.com", phone=shared)
    run_worker_once()
    first.refresh_from_db()
    second = make_user(django_user_model, "second", email="second@example.com", phone=shared)

    run_worker_once()

    second.refresh_from_db()
    assert second.bitrix_contact_id not in (None, first.bitrix_contact_id)


def test_two_new_users_matching_one_contact_do_not_share_it(sandbox, portal, django_user_model):
    existing = sales_contact(portal, phones=["+1 555 0888"])
    users = [make_user(django_user_model, n, email=f"{n}@example.com", phone="+15550888") for n in ("gina", "hal")]

    run_worker_once()

    ids = [User.objects.get(pk=u.pk).bitrix_contact_id for u in users]
    assert ids[0] == existing and ids[1] not in (None, existing)


def test_later_updates_of_an_adopted_contact_add_and_never_delete(sandbox, portal, django_user_model):
    existing = sales_contact(portal, emails=["ivy@example.com", "ivy@work.com"])
    ivy = make_user(django_user_model, "ivy", email="ivy@example.com")
    run_worker_once()

    User.objects.get(pk=ivy.pk).save()  # nothing changed: the update sends no e-mail at all
    ivy = User.objects.get(pk=ivy.pk)
    ivy.email, ivy.phone, ivy.first_name = "ivy@new.com", "", "Ivy"
    ivy.save()
    run_worker_once()

    adopted = contact(sandbox, existing)
    assert values(adopted, "EMAIL") == ["ivy@example.com", "ivy@work.com", "ivy@new.com"]
    assert sandbox.stats()["contacts"] == 1


def test_lookups_for_a_chunk_are_grouped(sandbox, portal, django_user_model):
    """30 new users with an order each: 2 findbycomm commands per 20 users, not one request per user."""
    sales_contact(portal, emails=["u7@example.com"])
    users = [make_user(django_user_model, f"u{i}", email=f"u{i}@example.com", phone=f"+1555{i:04d}") for i in range(30)]
    for user in users:
        Order.objects.create(owner=user, service_id="welding", quantity=1)
    before = sandbox.stats()

    run_worker_once(batch_size=100)

    stats = sandbox.stats()
    findbycomm = stats["commands_by_method"]["crm.duplicate.findbycomm"]
    # ceil(30/20) e-mail + ceil(30/20) phone, and the worker's check at start that it may call findbycomm.
    assert findbycomm == 4 + 1, stats["commands_by_method"]
    assert stats["by_method"]["batch"] - before["by_method"].get("batch", 0) <= 5, stats["by_method"]
    assert stats["contacts"] == 30  # 29 created + the adopted one
    assert User.objects.get(pk=users[7].pk).bitrix_contact_id == 1


def test_a_refused_lookup_pauses_with_the_setting_and_the_fix(sandbox, portal, django_user_model, caplog):
    sandbox.set_faults(denied_methods=["crm.duplicate.findbycomm"])
    make_user(django_user_model, "jo", email="jo@example.com")
    caplog.set_level(logging.ERROR)

    code = run_worker_once()

    assert code == 2  # paused: a configuration error
    assert sandbox.stats()["contacts"] == 0  # never created without having looked
    line = next(r.getMessage() for r in caplog.records if "BITRIX_CONTACT_MATCH" in r.getMessage())
    assert "crm.duplicate.findbycomm" in line and "BITRIX_CONTACT_MATCH=off" in line


@pytest.mark.parametrize("setting", [("email", "phone"), ()])
def test_the_worker_says_at_start_when_the_webhook_may_not_look_up(sandbox, settings, caplog, setting):
    """Issue 20, item 5: one line naming the setting and the fix; nothing asked when matching is off."""
    settings.BITRIX_CONTACT_MATCH = setting
    sandbox.set_faults(denied_methods=["crm.duplicate.findbycomm"])
    caplog.set_level(logging.ERROR)

    run_worker_once()

    lines = [r.getMessage() for r in caplog.records if "crm.duplicate.findbycomm" in r.getMessage()]
    if setting:
        assert lines == [
            "[WORKER] BITRIX_CONTACT_MATCH=email,phone: the webhook may not call crm.duplicate.findbycomm "
            "(insufficient_scope); give the webhook's user the CRM scope and read access to contacts, "
            "or set BITRIX_CONTACT_MATCH=off"
        ]
    else:
        assert lines == []
        assert "crm.duplicate.findbycomm" not in sandbox.stats()["by_method"]


def adoption_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("Adopted existing")]


def test_an_adoption_is_logged_with_the_contact_the_user_and_the_way_found(sandbox, portal, django_user_model, caplog):
    existing = sales_contact(portal, phones=["+1 555 0140"])
    kim = make_user(django_user_model, "kim", email="kim@example.com", phone="+15550140")
    caplog.set_level(logging.INFO, logger="crmbridge.worker")

    run_worker_once()

    assert adoption_lines(caplog) == [f"Adopted existing Bitrix contact {existing} for user {kim.pk} (by phone)"]


def test_an_ambiguous_adoption_is_logged_with_the_other_matches(sandbox, portal, django_user_model, caplog):
    oldest = sales_contact(portal, emails=["lou@example.com"])
    sales_contact(portal, emails=["LOU@example.com"])
    lou = make_user(django_user_model, "lou", email="lou@example.com")
    caplog.set_level(logging.INFO, logger="crmbridge.worker")

    run_worker_once()

    assert adoption_lines(caplog) == [
        f"Adopted existing Bitrix contact {oldest} for user {lou.pk} (by email; 1 other match(es), took the oldest)"
    ]


def test_a_contact_adopted_by_one_user_is_not_adopted_again_for_another(sandbox, portal, django_user_model):
    """Linked locally, not marked in the portal: the database says it is taken."""
    existing = sales_contact(portal, phones=["+1 555 0190"])
    mia = make_user(django_user_model, "mia", email="mia@example.com", phone="+15550190")
    run_worker_once()
    ned = make_user(django_user_model, "ned", email="ned@example.com", phone="+15550190")

    run_worker_once()

    assert User.objects.get(pk=mia.pk).bitrix_contact_id == existing
    assert User.objects.get(pk=ned.pk).bitrix_contact_id not in (None, existing)


def test_adoptions_of_one_chunk_are_all_counted(sandbox, portal, django_user_model):
    for email in ("oda@example.com", "ODA@example.com", "pam@example.com", "Pam@example.com"):
        sales_contact(portal, emails=[email])
    for name in ("oda", "pam"):
        make_user(django_user_model, name, email=f"{name}@example.com")

    run_worker_once()

    numbers = counts()
    assert (numbers["adopted_email"], numbers["ambiguous"]) == (2, 2)


def test_a_failed_lookup_is_logged_as_an_error(sandbox, django_user_model, caplog):
    sandbox.set_faults(denied_methods=["crm.duplicate.findbycomm"])
    make_user(django_user_model, "ora", email="ora@example.com")
    caplog.set_level(logging.ERROR, logger="crmbridge.worker")

    run_worker_once()

    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[WORKER] Looking up")]
    assert line == (
        "[WORKER] Looking up existing contacts failed: insufficient_scope in crm.duplicate.findbycomm: "
        "BITRIX_CONTACT_MATCH=email,phone: the webhook may not call crm.duplicate.findbycomm (insufficient_scope); "
        "give the webhook's user the CRM scope and read access to contacts, or set BITRIX_CONTACT_MATCH=off"
    )


def test_counters_redis_refuses_are_a_warning_and_the_adoption_stands(sandbox, portal, django_user_model, caplog):
    get_redis().set(contact_counts.counts_key(), "not a hash")
    existing = sales_contact(portal, emails=["pat@example.com"])
    pat = make_user(django_user_model, "pat", email="pat@example.com")
    caplog.set_level(logging.WARNING, logger="crmbridge.worker")

    run_worker_once()

    (line,) = [r.getMessage() for r in caplog.records if "count contact outcomes" in r.getMessage()]
    assert line.startswith("[WORKER] Could not count contact outcomes {'adopted_email': 1, 'ambiguous': 0}: ")
    assert line.endswith("WRONGTYPE Operation against a key holding the wrong kind of value")
    assert User.objects.get(pk=pat.pk).bitrix_contact_id == existing


def test_one_command_per_request_holds_for_the_lookup_too(sandbox, django_user_model):
    make_user(django_user_model, "quy", email="quy@example.com", phone="+15550191")

    run_worker_once(commands_per_request=1)

    # The e-mail and the phone lookup, one request each; the pipelines read; the add.
    assert sandbox.stats()["by_method"]["batch"] == 2 + 1 + 1


def test_a_start_check_that_breaks_is_logged_in_its_own_daemon_thread(sandbox, redis_client, caplog):
    """Any failure of the check is logged (ERROR, with its traceback); the thread never holds the exit."""
    redis_client.set(f"{streams.key('ratelimit')}:method:crm.duplicate.findbycomm", "not a time")  # ValueError
    caplog.set_level(logging.ERROR, logger="crmbridge.worker")

    thread = start_lookup_check("w-7")
    thread.join(10)

    assert (thread.name, thread.daemon, thread.is_alive()) == ("w-7-lookup-check", True, False)
    (message,) = [r.getMessage() for r in caplog.records]  # the traceback follows the line
    assert message.splitlines()[0] == "[WORKER] Could not check whether the webhook may look up contacts"
    assert message.splitlines()[-1] == "ValueError: could not convert string to float: 'not a time'"


@pytest.mark.parametrize("originator", ["bitrixsync", ""])
def test_our_own_contact_gets_its_email_replaced_not_added(sandbox, portal, django_user_model, settings, originator):
    """README: ours (our ORIGINATOR_ID, the user's ORIGIN_ID) gets its e-mail and phone replaced; adopted: additions.
    Also with ``BITRIX_ORIGINATOR_ID`` empty: then ours carry none."""
    settings.BITRIX_ORIGINATOR_ID = originator
    mia = make_user(django_user_model, "mia", email="mia@example.com", phone="+1 555 0555")
    run_worker_once()
    mia = User.objects.get(pk=mia.pk)
    mia.email, mia.phone = "mia@new.com", "+1 555 0556"
    mia.save()

    run_worker_once()

    ours = contact(sandbox, mia.bitrix_contact_id)
    assert (values(ours, "EMAIL"), values(ours, "PHONE")) == (["mia@new.com"], ["+1 555 0556"])


def test_another_systems_contact_with_our_origin_text_is_adopted_not_claimed(sandbox, portal, django_user_model):
    """Only our ORIGINATOR_ID *and* the user's ORIGIN_ID make a contact ours: another system's "user-<id>" stays
    theirs, gets the name and the phone it lacks added, and keeps its e-mail and origin."""
    ned = make_user(django_user_model, "ned", email="ned@example.com", phone="+1 555 0666", last_name="Stark")
    existing = sales_contact(
        portal, emails=["NED@example.com"], originator="legacy-crm", origin=f"user-{ned.pk}", name="N."
    )

    run_worker_once()

    assert User.objects.get(pk=ned.pk).bitrix_contact_id == existing
    adopted = contact(sandbox, existing)
    assert (adopted["NAME"], adopted["LAST_NAME"]) == ("Ned", "Stark")
    assert (values(adopted, "EMAIL"), values(adopted, "PHONE")) == (["NED@example.com"], ["+1 555 0666"])
    assert (adopted["ORIGINATOR_ID"], adopted["ORIGIN_ID"]) == ("legacy-crm", f"user-{ned.pk}")
