"""The create marker is committed before the ``add`` leaves: a crash in between is adopted, not repeated.

The sandbox is the witness: at the moment it receives ``crm.contact.add`` / ``crm.deal.add``
(its own handler thread, its own database connection), it reads the record's
``SyncRecord.create_started_at``. Only a marker already committed by the worker is seen.
"""

from __future__ import annotations

import pytest
from django.db import connection

from crmbridge.models import SyncRecord
from orders.models import Order
from tests.worker.helpers import run_worker_once

pytestmark = pytest.mark.django_db(transaction=True)


def watch_adds(sandbox, entity: str, seen: list[tuple[str, int, bool]]) -> None:
    """Wrap the sandbox's ``crm.<entity>.add``: note whether the record's marker exists on arrival."""
    method = f"crm.{entity}.add"
    handler = sandbox.portal.methods[method]

    def observed(params: dict, caller):
        local_id = int(str(params["fields"]["ORIGIN_ID"]).rsplit("-", 1)[1])
        try:
            marked = SyncRecord.objects.filter(
                entity=entity, local_id=local_id, create_started_at__isnull=False
            ).exists()
        finally:
            connection.close()  # this is the sandbox's request thread
        seen.append((entity, local_id, marked))
        return handler(params, caller)

    sandbox.portal.methods[method] = observed


def test_the_create_marker_is_committed_before_the_add_reaches_the_portal(sandbox, alice):
    orders = [Order.objects.create(owner=alice, service_id="welding", quantity=i + 1) for i in range(2)]
    seen: list[tuple[str, int, bool]] = []
    for entity in ("contact", "deal"):
        watch_adds(sandbox, entity, seen)

    assert run_worker_once() == 0

    expected = [("contact", alice.pk, True)] + [("deal", order.pk, True) for order in orders]
    assert sorted(seen) == sorted(expected)
    # Written back: the markers are cleared with the Bitrix IDs.
    assert not SyncRecord.objects.filter(create_started_at__isnull=False).exists()
