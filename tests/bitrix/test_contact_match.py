"""``ContactMatcher`` on its own (the worker's side: tests/worker/test_existing_customers.py).

Pinned: which contacts are read and how (one ``crm.contact.list`` per 50 matches, the parameters as
sent), which contact a user takes (by e-mail before phone; not one our system made for another
user, nor one linked to another local user, but one we made for this very user), the update of an
adopted contact, the contact that counts as ours, and a refused lookup's error (code, status, the
setting and the fix).
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from urllib.parse import parse_qsl

import pytest

from accounts.models import User
from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.contact_match import (
    FINDBYCOMM,
    ContactMatcher,
    Customer,
    adopted_contact_fields,
    findbycomm_problem,
    is_ours,
    matching_modes,
)
from crmbridge.bitrix.errors import BitrixError, ErrorKind
from tests.bitrix.conftest import batch_answer

FIX = "give the webhook's user the CRM scope and read access to contacts, or set BITRIX_CONTACT_MATCH=off"


@pytest.mark.parametrize(("setting", "named"), [((), "off"), (("phone",), "phone")])
def test_a_refused_lookup_names_the_setting_as_it_is(sandbox, client, settings, setting, named):
    """Found by mutation testing: a matcher given its modes (a script, the bench) while the setting says
    otherwise names the setting's value, ``off`` when it is empty."""
    settings.BITRIX_CONTACT_MATCH = setting
    sandbox.set_faults(denied_methods=[FINDBYCOMM])

    with pytest.raises(BitrixError) as caught:
        ContactMatcher(client, modes=("email",)).match([Customer(1, email="jo@example.com")])

    assert (caught.value.kind, caught.value.method) == (ErrorKind.CONFIG, FINDBYCOMM)
    assert caught.value.description.startswith(
        f"BITRIX_CONTACT_MATCH={named}: the webhook may not call crm.duplicate.findbycomm ("
    )


def test_a_lookup_refused_as_a_whole_keeps_its_code_and_status(sandbox, client, settings):
    """The line the worker logs and pauses with: the portal's code and HTTP status, then the fix."""
    settings.BITRIX_CONTACT_MATCH = ("email", "phone")
    sandbox.set_faults(auth_error="insufficient_scope")

    with pytest.raises(BitrixError) as caught:
        ContactMatcher(client).match([Customer(1, email="jo@example.com")])

    assert caught.value.kind is ErrorKind.CONFIG
    assert str(caught.value) == (
        "insufficient_scope HTTP 403 in crm.duplicate.findbycomm: BITRIX_CONTACT_MATCH=email,phone: "
        f"the webhook may not call crm.duplicate.findbycomm (insufficient_scope); {FIX}"
    )


def test_a_portal_without_findbycomm_is_a_refused_lookup(portal, settings):
    """An older portal answers 404 ``ERROR_METHOD_NOT_FOUND``: the same line as a lack of rights."""
    settings.BITRIX_CONTACT_MATCH = ("email", "phone")
    portal.status = 404
    portal.body = b'{"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}'

    problem = findbycomm_problem(BitrixClient(portal.url, read_timeout=5))

    assert problem == (
        "BITRIX_CONTACT_MATCH=email,phone: the webhook may not call crm.duplicate.findbycomm "
        f"(ERROR_METHOD_NOT_FOUND); {FIX}"
    )
    # The probe: an address that no contact can hold (a reserved domain), so it never finds anyone.
    assert portal.requests[0]["path"].endswith("/crm.duplicate.findbycomm")
    assert json.loads(portal.requests[0]["raw"]) == {
        "entity_type": "CONTACT",
        "type": "EMAIL",
        "values": ["probe@bitrixsync.invalid"],
    }


def test_without_the_setting_both_modes_are_on(settings):
    del settings.BITRIX_CONTACT_MATCH

    assert matching_modes() == ("email", "phone")


# -- reading the contacts found ------------------------------------------------------------------
def answering(portal, *bodies: bytes) -> None:
    answers = iter(bodies)
    portal.body = lambda: next(answers)


def sent_commands(request: dict) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """A batch request's ``cmd`` as ``key -> (method, [(name, value), ...])``."""
    commands = json.loads(request["raw"])["cmd"]
    return {key: (text.partition("?")[0], parse_qsl(text.partition("?")[2])) for key, text in commands.items()}


def test_the_lookups_and_the_read_are_sent_as_the_portal_expects(portal):
    """The sandbox, like the portal, ignores ``order`` and the case of top-level names: only the wire shows them.
    Values go out as the duplicate search compares them; a user without an e-mail adds no e-mail value."""
    found = batch_answer({"e0": {"CONTACT": [7, 5]}, "p0": []})
    page = [{"ID": "5", "EMAIL": [{"VALUE": "jo@example.com"}]}, {"ID": "7", "EMAIL": [{"VALUE": "JO@example.com"}]}]
    answering(portal, found, batch_answer({"r0": page}))
    customers = [Customer(1, email=" Jo@Example.com"), Customer(2, phone="+1 (555) 0100 #12")]

    matches = ContactMatcher(BitrixClient(portal.url, read_timeout=5), modes=("email", "phone")).match(customers)

    assert (matches[1].contact_id, matches[1].candidates) == (5, [5, 7])
    assert sent_commands(portal.requests[0]) == {
        "e0": (FINDBYCOMM, [("entity_type", "CONTACT"), ("type", "EMAIL"), ("values[0]", "jo@example.com")]),
        "p0": (FINDBYCOMM, [("entity_type", "CONTACT"), ("type", "PHONE"), ("values[0]", "15550100")]),
    }
    select = ["ID", "NAME", "LAST_NAME", "EMAIL", "PHONE", "ORIGINATOR_ID", "ORIGIN_ID"]
    assert sent_commands(portal.requests[1]) == {
        "r0": (
            "crm.contact.list",
            [("filter[@ID][0]", "5"), ("filter[@ID][1]", "7")]
            + [(f"select[{i}]", name) for i, name in enumerate(select)]
            + [("order[ID]", "ASC"), ("start", "-1")],
        )
    }


def test_ids_as_a_php_map_are_read_and_odd_items_of_the_list_skipped(portal):
    page = [{"ID": "x"}, "junk", {"NAME": "no id"}, {"ID": "5", "EMAIL": [{"VALUE": "jo@example.com"}]}]
    answering(portal, batch_answer({"e0": {"CONTACT": {"3": 5}}}), batch_answer({"r0": page}))

    matches = ContactMatcher(BitrixClient(portal.url, read_timeout=5), modes=("email",)).match(
        [Customer(1, email="jo@example.com")]
    )

    assert (matches[1].contact_id, matches[1].candidates) == (5, [5])


def test_a_list_answer_that_is_no_list_reads_no_contact(portal):
    answering(portal, batch_answer({"e0": {"CONTACT": [5]}}), batch_answer({"r0": False}))

    matcher = ContactMatcher(BitrixClient(portal.url, read_timeout=5), modes=("email",))

    assert matcher.match([Customer(1, email="jo@example.com")]) == {}


def add_contacts(client, fields: list[dict]) -> list[int]:
    ids: list[int] = []
    for start in range(0, len(fields), 50):
        commands = {
            f"a{start + i}": ("crm.contact.add", {"fields": f}) for i, f in enumerate(fields[start : start + 50])
        }
        ids += [int(v) for v in client.batch(commands).results.values()]
    return ids


def contact_with(client, email: str, **fields) -> int:
    return client.add("contact", {"NAME": "Sales", "EMAIL": [{"VALUE": email}], **fields})


def test_more_than_fifty_matches_are_all_read_in_one_list_command_per_fifty(sandbox, client):
    """README "Existing customers": one ``crm.contact.list`` per 50 matched contacts; none is lost."""
    add_contacts(client, [{"NAME": "Other", "EMAIL": [{"VALUE": "other@example.com"}]}])  # not found
    same = add_contacts(client, [{"NAME": f"Jo {n}", "EMAIL": [{"VALUE": "jo@example.com"}]} for n in range(51)])
    before = sandbox.stats()["commands_by_method"].get("crm.contact.list", 0)

    matches = ContactMatcher(client, modes=("email",)).match([Customer(1, email="jo@example.com")])

    assert (matches[1].contact_id, matches[1].candidates) == (same[0], same)
    assert sandbox.stats()["commands_by_method"]["crm.contact.list"] - before == 2


def test_an_email_match_wins_over_an_older_phone_match(sandbox, client):
    """README: by e-mail, then by phone; the phone is not looked at once the e-mail found a contact."""
    client.add("contact", {"NAME": "By phone", "PHONE": [{"VALUE": "+1 555 0100 #12"}]})
    by_email = client.add("contact", {"NAME": "By e-mail", "EMAIL": [{"VALUE": "Jo@Example.com"}]})

    matches = ContactMatcher(client).match([Customer(1, email="jo@example.com", phone="+15550100")])

    assert (matches[1].contact_id, matches[1].by, matches[1].candidates) == (by_email, "email", [by_email])


def test_max_commands_is_kept_down_to_one_command_a_request(sandbox, client):
    contact_with(client, "jo@example.com")
    before = sandbox.stats()["by_method"].get("batch", 0)

    matches = ContactMatcher(client, max_commands=1).match([Customer(1, email="jo@example.com", phone="+1 555")])

    assert matches[1].by == "email"
    assert sandbox.stats()["by_method"]["batch"] - before == 3  # e-mail, phone, then the read


def test_a_user_without_an_email_or_a_phone_is_looked_up_by_neither():
    assert Customer.of(User(pk=5, email="", phone="")) == Customer(5, "", "")
    assert Customer.of(SimpleNamespace(pk=6, email=None)) == Customer(6, "", "")  # a user model without phones


# -- whose contact it is -------------------------------------------------------------------------
def test_a_contact_our_system_made_for_another_user_is_not_taken(sandbox, client, settings):
    """README: "carrying our ORIGINATOR_ID with another user's ORIGIN_ID": the next match is adopted."""
    contact_with(client, "jo@example.com", ORIGINATOR_ID=settings.BITRIX_ORIGINATOR_ID, ORIGIN_ID="user-77")
    sales = contact_with(client, "jo@example.com")

    matches = ContactMatcher(client).match([Customer(5, email="jo@example.com")])

    assert (matches[5].contact_id, matches[5].candidates) == (sales, [sales])


def test_a_contact_our_system_made_for_this_user_is_found(sandbox, client, settings):
    ours = contact_with(client, "jo@example.com", ORIGINATOR_ID=settings.BITRIX_ORIGINATOR_ID, ORIGIN_ID="user-5")

    matches = ContactMatcher(client).match([Customer(5, email="jo@example.com")])

    assert matches[5].contact_id == ours


def test_an_empty_originator_id_still_tells_the_sales_teams_contacts_from_ours(sandbox, client, settings):
    """Found by mutation testing (a bug then): with ``BITRIX_ORIGINATOR_ID`` empty, every contact without an
    origin counted as made by us for another user, so no customer was ever adopted."""
    settings.BITRIX_ORIGINATOR_ID = ""
    contact_with(client, "jo@example.com", ORIGIN_ID="user-77")  # ours, for user 77
    sales = contact_with(client, "jo@example.com")

    matches = ContactMatcher(client).match([Customer(5, email="jo@example.com")])

    assert (matches[5].contact_id, matches[5].candidates) == (sales, [sales])


def test_a_contact_linked_to_another_local_user_is_not_taken(sandbox, client):
    """The worker passes the database's links (``linked_users``): contact -> the user linked to it."""
    linked = contact_with(client, "jo@example.com")
    free = contact_with(client, "jo@example.com")
    matcher = ContactMatcher(client, linked_elsewhere=lambda ids: {linked: 99} if linked in ids else {})

    assert matcher.match([Customer(5, email="jo@example.com")])[5].candidates == [free]
    assert matcher.match([Customer(99, email="jo@example.com")])[99].candidates == [linked, free]


# -- ours or adopted, and the update of an adopted one -------------------------------------------
def test_a_contact_not_read_counts_as_ours():
    """No contact read (the pre-matching behaviour): the update is the full one, as for ours."""
    assert is_ours(None, 5) is True
    assert is_ours({}, 5) is True


def test_the_update_of_an_adopted_contact_sends_only_what_it_lacks():
    user = User(pk=5, first_name="Jo", last_name="Doe", email="jo@example.com", phone="+1 555 0100")
    theirs = {"EMAIL": [{"ID": "3", "VALUE": "JO@example.com"}], "PHONE": [{"ID": "4", "VALUE": "+1 555 0199"}]}

    assert adopted_contact_fields(user, theirs) == {
        "NAME": "Jo",
        "LAST_NAME": "Doe",
        "PHONE": [{"VALUE": "+1 555 0100", "VALUE_TYPE": "WORK"}],
    }


def test_a_user_without_a_phone_attribute_sends_no_phone():
    user = SimpleNamespace(first_name="", last_name="", email="jo@example.com")

    assert adopted_contact_fields(user, {}) == {"EMAIL": [{"VALUE": "jo@example.com", "VALUE_TYPE": "WORK"}]}
