"""A realistic state for the dashboard: orders synced and pending, a running worker, a chart's hour, dead letters.

Used by the browser tests and to take README's screenshot (docs/dashboard.png).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis

from crmbridge.publishing.messages import Operation
from crmbridge.redis_io import streams, telemetry
from crmbridge.worker.dead_letters import DeadLetter, move_to_dead_letters
from tests.diagnostics.helpers import beat, create_group


@dataclass
class DashboardState:
    pending_order_ids: list[int]
    dead_order_ids: list[int]
    dead_ids: list[str]


def make_orders(django_user_model) -> tuple[list, list]:
    """Three customers, twelve orders: eight synced to Bitrix, four not yet."""
    from orders.models import Order

    users = [
        django_user_model.objects.create_user(
            username=name, email=f"{name}@example.com", password="S3cure-pass-1", first_name=name.title(),
            bitrix_contact_id=100 + i,
        )
        for i, name in enumerate(("jane", "omar", "li"))
    ]  # fmt: skip
    services = ("cnc-milling", "laser-cutting", "welding", "3d-printing")
    orders = [
        Order.objects.create(
            owner=users[i % 3], service_id=services[i % 4], quantity=i + 1,
            bitrix_deal_id=500 + i if i < 8 else None,
        )
        for i in range(12)
    ]  # fmt: skip
    return users, orders


def _entry_id(at: float, seq: int) -> str:
    return f"{int(at * 1000)}-{seq}"


def fill_redis(client: redis.Redis, orders: list, *, big_payload_bytes: int = 0) -> DashboardState:
    """An hour of traffic (all synced), then the last orders waiting, two of them held by a worker, two dead letters."""
    ops = streams.operations_stream()
    client.delete(ops)  # what fixtures published (the admin's contact): the history below starts an hour ago
    create_group(client)
    now = time.time()
    now_minute = int(now // 60)
    for back in range(59, 0, -1):  # an hour of traffic: created = synced, a few retries, two dead letters
        minute = now_minute - back
        created = 3 + (minute * 7) % 9 + (6 if 20 <= back <= 26 else 0)
        for seq in range(created):
            client.xadd(ops, Operation("deal", "update", 1 + seq % 8).to_fields(), id=_entry_id(minute * 60 + 1, seq))
        key = telemetry.stats_key(minute)
        client.hset(key, mapping={"processed": created, "retried": 2 if 20 <= back <= 26 else 0,
                                  "dead_lettered": 1 if back in (23, 24) else 0})  # fmt: skip
        client.expire(key, telemetry.STATS_TTL_SECONDS)
    delivered = client.xreadgroup(streams.GROUP, "worker_app-1-4242", {ops: ">"}, count=100_000)
    client.xack(ops, streams.GROUP, *[entry_id for entry_id, _ in delivered[0][1]])

    pending = [order.pk for order in orders if order.bitrix_deal_id is None]
    dead_orders, waiting = pending[:2], pending[2:]
    letters = []
    for number, order_id in enumerate(dead_orders):
        entry_id = client.xadd(ops, Operation("deal", "create", order_id).to_fields())
        client.xreadgroup(streams.GROUP, "worker_app-1-4242", {ops: ">"}, count=1)
        payload = client.xrange(ops, min=entry_id, max=entry_id)[0][1]
        if number == 0 and big_payload_bytes:
            payload = {**payload, "comment": "x" * big_payload_bytes}
        letters.append(
            DeadLetter(
                source_stream=ops, source_id=entry_id, payload=payload, reason="permanent_error",
                error_code="ERROR_CORE", error_description="Field 'OPPORTUNITY': wrong number format", attempts=1,
                consumer="worker_app-1-4242",
            )
        )  # fmt: skip
    move_to_dead_letters(client, letters)
    for order_id in waiting:
        client.xadd(ops, Operation("deal", "update", order_id).to_fields())
    client.xreadgroup(streams.GROUP, "worker_app-1-4242", {ops: ">"}, count=1)  # one in hand
    beat(client, "worker_app-1-4242", processed=812, retried=14, dead_lettered=2, current="deal update (1 record)")
    client.set(streams.key("last_success"), json.dumps({"at": now - 2, "detail": "batch of 3 commands"}))
    client.set(
        streams.key("last_failure"),
        json.dumps({"at": now - 1900, "detail": "ERROR_CORE: Field 'OPPORTUNITY': wrong number format"}),
    )
    dead_ids = [entry_id for entry_id, _ in client.xrange(streams.dead_letter_stream())]
    return DashboardState(pending_order_ids=waiting, dead_order_ids=dead_orders, dead_ids=dead_ids)
