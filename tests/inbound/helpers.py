"""Helpers of the inbound tests: drive the sandbox, deliver events, read orders."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

import requests
from django.conf import settings

from crmbridge.bitrix.client import BitrixClient
from orders.models import Order
from tests.conftest import wait_for
from tests.inbound.conftest import URL, event_form
from tests.worker.helpers import run_worker_once


def control(sandbox, path: str, body: dict | None = None) -> dict:
    response = requests.post(f"{sandbox.base_url}/_sandbox/{path}", json=body or {}, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def move_stage(sandbox, deal_id: int, stage_id: str) -> None:
    """A manager moves the deal: the sandbox POSTs ONCRMDEALUPDATE to our endpoint."""
    control(sandbox, f"deals/{deal_id}/stage", {"stage_id": stage_id})


def wait_for_entries(read, count: int, timeout: float = 5.0) -> list[dict]:
    """The sandbox delivers events from a background thread: wait for them to be queued."""
    return wait_for(
        lambda: entries if len(entries := read()) >= count else None, timeout, f"{count} event(s) queued", 0.02
    )


def post_event(client, event: str, bitrix_id: int, ts: datetime) -> None:
    """Deliver an event as the portal would, with a chosen ``ts`` (late, repeated, out of order)."""
    form = event_form(event, str(bitrix_id), ts=str(int(ts.timestamp())))
    response = client.post(URL, data=urlencode(form), content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200, response.content


def linked_order(owner) -> Order:
    """An order whose deal the worker created in the sandbox (the normal outbound path)."""
    order = Order.objects.create(owner=owner, service_id="cnc-milling", quantity=2)
    assert run_worker_once() == 0
    order.refresh_from_db()
    assert order.bitrix_deal_id
    return order


def deal_in(sandbox, deal_id: int) -> dict | None:
    return next((d for d in sandbox.records("deal") if int(d["ID"]) == deal_id), None)


def silently_set_stage(deal_id: int, stage_id: str) -> None:
    """Change the deal with the integration's own webhook: the sandbox sends no event for that."""
    BitrixClient(settings.BITRIX_WEBHOOK_URL).update("deal", deal_id, {"STAGE_ID": stage_id})


def status_of(order: Order) -> str:
    return Order.objects.values_list("status", flat=True).get(pk=order.pk)
