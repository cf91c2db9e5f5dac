"""Existing customers: find a user's contact in the portal before creating one.

The rules (``BITRIX_CONTACT_MATCH``, README "Existing customers"):

* Looked for only when a contact would be created: the user has no
  ``bitrix_contact_id`` and no contact carries our ``ORIGIN_ID``.
* By e-mail (any letter case), then by phone (digits only, the extension
  ignored), with ``crm.duplicate.findbycomm``; ``email``, ``phone`` or ``off``
  narrow it.
* One match: adopted. Several: the oldest (lowest ID) is adopted and the
  ambiguity counted. None: a contact is created.
* A contact that already belongs to another of our users (linked locally, or
  carrying our ``ORIGINATOR_ID`` with another user's ``ORIGIN_ID``) is never
  taken, nor one contact by two users of the same lookup: the lower user ID
  gets it and the other takes its next candidate, or a new contact.

Cost, for ``n`` users looked up together: ``findbycomm`` takes 20 values, so
``ceil(n_email / 20) + ceil(n_phone / 20)`` commands, sent in ``batch``
requests of 50 (one request for up to 500 users with both); then, only when
something matched, one ``crm.contact.list`` per 50 matched contacts (their
e-mails and phones: the answer does not say which value found which contact,
and the update must know what the contact already has), again in one batch.
So a chunk of users costs one or two requests, never one per user.

An adopted contact keeps the ``ORIGINATOR_ID``/``ORIGIN_ID`` it has (usually
none): it stays the sales team's record, and our link to it is the user's
``bitrix_contact_id``. A re-sync finds it again by that ID, or, if the ID were
lost, by the same e-mail/phone lookup. Updates to it add our e-mail and phone
only when it lacks them and never touch its other entries
(``adopted_contact_fields``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from crmbridge import entities
from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.communications import normal_email, normal_phone
from crmbridge.bitrix.errors import BitrixError, ErrorKind

FINDBYCOMM = "crm.duplicate.findbycomm"
MAX_VALUES = 20  # per findbycomm call
MAX_COMMANDS = 50  # per batch
PAGE = 50  # crm.contact.list answers 50 records a page
KINDS = {"email": ("EMAIL", normal_email), "phone": ("PHONE", normal_phone)}
SELECT = ["ID", "NAME", "LAST_NAME", "EMAIL", "PHONE", "ORIGINATOR_ID", "ORIGIN_ID"]


@dataclass(frozen=True)
class Customer:
    """What a lookup needs of a user."""

    user_id: int
    email: str = ""
    phone: str = ""

    @classmethod
    def of(cls, user: Any) -> Customer:
        return cls(user.pk, user.email or "", getattr(user, "phone", "") or "")


@dataclass
class Match:
    contact_id: int
    by: str  # "email" | "phone"
    candidates: list[int] = field(default_factory=list)  # every usable match, ascending
    contact: dict = field(default_factory=dict)  # as crm.contact.list answers it (SELECT)

    @property
    def ambiguous(self) -> bool:
        return len(self.candidates) > 1


def matching_modes() -> tuple[str, ...]:
    """``BITRIX_CONTACT_MATCH`` as a tuple: ``("email", "phone")``, one of them, or ``()`` (off)."""
    return tuple(getattr(settings, "BITRIX_CONTACT_MATCH", ("email", "phone")))


class ContactMatcher:
    """Grouped lookups for many users at once (see the module's docstring for the cost)."""

    def __init__(
        self,
        client: BitrixClient,
        *,
        modes: Iterable[str] | None = None,
        max_commands: int = MAX_COMMANDS,
        linked_elsewhere: Callable[[set[int]], dict[int, int]] | None = None,
    ) -> None:
        self.client = client
        self.modes = tuple(matching_modes() if modes is None else modes)
        self.max_commands = max(1, min(max_commands, MAX_COMMANDS))
        # contact ID -> the local user already linked to it (the database's knowledge).
        self.linked_elsewhere = linked_elsewhere or (lambda ids: {})

    def match(self, customers: list[Customer]) -> dict[int, Match]:
        """user ID -> the contact to adopt; users without a match are left out. Raises ``BitrixError``."""
        customers = sorted(customers, key=lambda c: c.user_id)
        if not self.modes or not customers:
            return {}
        found = self._find_ids(customers)
        if not found:
            return {}
        contacts = self._read(found)
        return self._assign(customers, contacts, self.linked_elsewhere(set(contacts)))

    # -- step 1: findbycomm, 20 values a command, 50 commands a request ---------------------
    def _find_ids(self, customers: list[Customer]) -> set[int]:
        commands: dict[str, tuple[str, dict]] = {}
        for mode in self.modes:
            kind, norm = KINDS[mode]
            values = sorted({norm(getattr(c, mode)) for c in customers} - {""})
            for n, start in enumerate(range(0, len(values), MAX_VALUES)):
                chunk = values[start : start + MAX_VALUES]
                commands[f"{mode[0]}{n}"] = (FINDBYCOMM, {"entity_type": "CONTACT", "type": kind, "values": chunk})
        ids: set[int] = set()
        for value in self._run(commands).values():
            ids.update(_contact_ids(value))
        return ids

    # -- step 2: the contacts found, with their e-mails and phones -----------------------------
    def _read(self, ids: set[int]) -> dict[int, dict]:
        ordered = sorted(ids)
        commands = {
            f"r{n}": (
                entities.CONTACT.method("list"),
                {"filter": {"@ID": ordered[i : i + PAGE]}, "select": SELECT, "order": {"ID": "ASC"}, "start": -1},
            )
            for n, i in enumerate(range(0, len(ordered), PAGE))
        }
        contacts: dict[int, dict] = {}
        for page in self._run(commands).values():
            for item in page if isinstance(page, list) else []:
                if isinstance(item, dict) and str(item.get("ID", "")).isdigit():
                    contacts[int(item["ID"])] = item
        return contacts

    def _run(self, commands: dict[str, tuple[str, dict]]) -> dict[str, Any]:
        """Every command's result; the first failed command raises (a lookup must not be half-done)."""
        results: dict[str, Any] = {}
        keys = list(commands)
        for start in range(0, len(keys), self.max_commands):
            chunk = {key: commands[key] for key in keys[start : start + self.max_commands]}
            try:
                outcome = self.client.batch(chunk)
            except BitrixError as exc:
                raise explained(exc) from None
            for error in outcome.errors.values():
                raise explained(error)
            results.update(outcome.results)
        return results

    # -- step 3: who gets which contact ---------------------------------------------------------
    def _assign(self, customers: list[Customer], contacts: dict[int, dict], linked: dict[int, int]) -> dict[int, Match]:
        taken: set[int] = set()
        matches: dict[int, Match] = {}
        for customer in customers:
            for mode in self.modes:
                candidates = [
                    contact_id
                    for contact_id, contact in sorted(contacts.items())
                    if _holds(contact, mode, getattr(customer, mode))
                    and contact_id not in taken
                    and linked.get(contact_id, customer.user_id) == customer.user_id
                    and not _ours_for_another(contact, customer.user_id)
                ]
                if candidates:
                    chosen = candidates[0]  # the oldest
                    taken.add(chosen)
                    matches[customer.user_id] = Match(chosen, mode, candidates, contacts[chosen])
                    break
        return matches


def _contact_ids(value: Any) -> list[int]:
    """``{"CONTACT": [275]}``; ``[]``, ``{}`` or a missing key: nothing found."""
    ids = value.get("CONTACT") if isinstance(value, dict) else None
    if isinstance(ids, dict):  # a PHP array with odd keys
        ids = list(ids.values())
    return [int(i) for i in ids or [] if str(i).isdigit()]


def _holds(contact: dict, mode: str, value: str) -> bool:
    kind, norm = KINDS[mode]
    wanted = norm(value)
    entries = contact.get(kind) or []
    return bool(wanted) and any(isinstance(e, dict) and norm(str(e.get("VALUE") or "")) == wanted for e in entries)


def _ours_for_another(contact: dict, user_id: int) -> bool:
    """Created by this system for another user (same e-mail or phone): not ours to take.

    A contact without ``ORIGIN_ID`` never is (ours always carry one), also when
    ``BITRIX_ORIGINATOR_ID`` is empty and so equal to the sales team's missing one.
    """
    origin = contact.get("ORIGIN_ID") or ""
    if not origin or (contact.get("ORIGINATOR_ID") or "") != settings.BITRIX_ORIGINATOR_ID:
        return False
    return origin != entities.CONTACT.origin_id(user_id)


def is_ours(contact: dict | None, user_id: int) -> bool:
    """Does this contact carry our ``ORIGINATOR_ID`` and this user's ``ORIGIN_ID`` (we created it)?"""
    if not contact:
        return True  # nothing read: the contact is the one we created (the pre-matching behaviour)
    return (contact.get("ORIGINATOR_ID") or "") == settings.BITRIX_ORIGINATOR_ID and (
        contact.get("ORIGIN_ID") or ""
    ) == entities.CONTACT.origin_id(user_id)


def adopted_contact_fields(user: Any, existing: dict) -> dict:
    """The update for a contact we adopted: names we know, and only the e-mail/phone it lacks.

    A multifield item sent without ``ID`` is added by the portal, so an item is
    sent only when the contact has no entry with that value (compared as the
    duplicate search compares them); its other entries are never sent, so never
    changed or deleted. No ``ORIGINATOR_ID``/``ORIGIN_ID``: the record stays
    the sales team's. An empty local name does not clear theirs.
    """
    fields: dict[str, Any] = {}
    for name, value in (("NAME", user.first_name), ("LAST_NAME", user.last_name)):
        if value:
            fields[name] = value
    for mode, value in (("email", user.email), ("phone", getattr(user, "phone", ""))):
        if value and not _holds(existing, mode, value):
            fields[KINDS[mode][0]] = [{"VALUE": value, "VALUE_TYPE": "WORK"}]
    return fields


# Errors about the webhook as a whole (wrong, expired): not this method's rights, said elsewhere.
WEBHOOK_WIDE = frozenset({"NO_AUTH_FOUND", "EXPIRED_TOKEN", "INVALID_TOKEN", "PORTAL_DELETED"})


def refused(error: BitrixError) -> bool:
    """Does ``error`` say that this webhook may not call ``findbycomm`` (rights, scope, no such method)?"""
    code = error.code.upper()
    if code in WEBHOOK_WIDE:
        return False
    return error.kind is ErrorKind.CONFIG or code == "ERROR_METHOD_NOT_FOUND"


def explained(error: BitrixError) -> BitrixError:
    """A refused lookup names the setting and the fix (a configuration error pauses the worker)."""
    if not refused(error):
        return error
    return BitrixError(
        error.code, permission_problem(error), kind=ErrorKind.CONFIG, http_status=error.http_status, method=FINDBYCOMM
    )


def permission_problem(error: BitrixError) -> str:
    setting = ",".join(matching_modes()) or "off"
    return (
        f"BITRIX_CONTACT_MATCH={setting}: the webhook may not call {FINDBYCOMM} ({error.code or error}); "
        "give the webhook's user the CRM scope and read access to contacts, or set BITRIX_CONTACT_MATCH=off"
    )


def findbycomm_problem(client: BitrixClient) -> str | None:
    """One line when matching is on and the webhook may not call ``findbycomm``; ``None`` when it may.

    Any other failure (network, 5xx) is not this check's business: ``None``.
    """
    if not matching_modes():
        return None
    try:
        client.call(FINDBYCOMM, {"entity_type": "CONTACT", "type": "EMAIL", "values": ["probe@bitrixsync.invalid"]})
    except BitrixError as exc:
        if refused(exc):
            return permission_problem(exc)
    return None
