"""Local records -> Bitrix24 fields: an order becomes a deal, a user a contact.

``ORIGINATOR_ID`` names this system and ``ORIGIN_ID`` the local record
(``order-12``, ``user-5``): Bitrix enforces no uniqueness, so they are how a
deal created before a crash is found again instead of created twice.

Order statuses map to deal stages through ``BITRIX_STAGE_MAP``
(``"new=NEW,confirmed=PREPARATION,..."``); the inverse serves events coming
back from the portal.
"""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from crmbridge import entities
from crmbridge.bitrix import pipelines, portal_settings
from orders.catalogue import SERVICES


def origin_id(entity: str, local_id: int) -> str:
    """``origin_id("deal", 12) == "order-12"``, ``origin_id("contact", 5) == "user-5"``."""
    if entity not in entities.ENTITIES:
        raise ValueError(f"unknown entity {entity!r}")
    return entities.get(entity).origin_id(local_id)


def deal_fields(order, *, contact_id: int | str | None, category: int | None = None) -> dict:
    """The deal for ``order``. ``contact_id`` may be a ``result_ref`` to a contact added in the same batch.

    ``category``: the pipeline whose stage ids to use (default: the one its service maps to).
    ``OPPORTUNITY`` is the order's amount, which its product rows add up to (``product_rows``).
    """
    category = pipelines.category_for_service(order.service_id) if category is None else category
    fields = {
        "TITLE": f"Order #{order.pk}: {SERVICES.get(order.service_id, order.service_id)} x {order.quantity}",
        "OPPORTUNITY": str(order.amount),
        "CURRENCY_ID": order.currency,
        "STAGE_ID": pipelines.stage_for(order.status, category),
        "COMMENTS": _comments(order),
        "ORIGINATOR_ID": settings.BITRIX_ORIGINATOR_ID,
        "ORIGIN_ID": origin_id("deal", order.pk),
    }
    if contact_id is not None:  # unknown yet: leave the deal's contact as it is
        fields["CONTACT_ID"] = contact_id
    return fields


def _comments(order) -> str:
    parts = [f"Material: {order.material}" if order.material else "", order.comment]
    return "\n\n".join(part for part in parts if part)


def contact_fields(user, *, existing: dict | None = None) -> dict:
    """The contact for ``user``.

    ``existing`` is the contact as ``crm.contact.get`` returns it. Bitrix
    appends a multifield entry sent without its ``ID``, so an update names the
    ID of the first e-mail and phone to overwrite them, and deletes the phone
    entry when the user cleared the phone.
    """
    existing = existing or {}
    fields = {
        "NAME": user.first_name,
        "LAST_NAME": user.last_name,
        "ORIGINATOR_ID": settings.BITRIX_ORIGINATOR_ID,
        "ORIGIN_ID": origin_id("contact", user.pk),
    }
    for name, value in (("EMAIL", user.email), ("PHONE", user.phone)):
        entry = _multifield_entry(value, existing.get(name))
        if entry is not None:
            fields[name] = [entry]
    return fields


def _multifield_entry(value: str, existing_entries) -> dict | None:
    first = existing_entries[0] if isinstance(existing_entries, list) and existing_entries else None
    entry_id = first.get("ID") if isinstance(first, dict) else None
    if not value:
        return {"ID": entry_id, "VALUE": "", "DELETE": "Y"} if entry_id else None
    entry = {"VALUE": value, "VALUE_TYPE": "WORK"}
    if entry_id:
        entry["ID"] = entry_id
    return entry


def stage_for_status(status: str) -> str:
    """The deal stage for an order status; a status missing from the map is a configuration error."""
    stages = _stage_map(settings.BITRIX_STAGE_MAP)
    if status not in stages:
        raise ImproperlyConfigured(f"BITRIX_STAGE_MAP has no stage for order status {status!r}")
    return stages[status]


def status_for_stage(stage_id: str) -> str | None:
    """The order status for a deal stage of any mapped pipeline (the first status mapped to it), or ``None``."""
    return pipelines.status_for_stage(stage_id)


@lru_cache(maxsize=8)
def _stage_map(raw: str) -> dict[str, str]:
    return dict(portal_settings.pairs("BITRIX_STAGE_MAP", raw, form="status=STAGE"))
