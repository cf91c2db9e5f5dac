"""Issue 19 item 5: a dead letter whose record id is poisoned (``²``) never takes the dashboard down.

The message is dead-lettered by a real worker, exactly as an operator would meet
it; every page that shows it, and the buttons that act on it, must answer.
"""

from __future__ import annotations

import pytest

from crmbridge.diagnostics.dashboard_rows import record_of
from crmbridge.redis_io import streams
from crmbridge.worker.runner import Worker
from tests.worker.helpers import fast_config

pytestmark = pytest.mark.django_db(transaction=True)

DASHBOARD = "/admin/crmbridge/syncrecord/dashboard/"
POISON = {"v": "1", "entity": "deal", "op": "update", "id": "²", "ts": "x"}


@pytest.fixture
def poisoned(redis_client, sandbox) -> str:
    """``XADD bitrix:operations * v 1 entity deal op update id ² ts x``, dead-lettered by a worker."""
    redis_client.xadd(streams.operations_stream(), POISON)
    Worker(fast_config(), once=True).run()
    ((dead_id, _),) = redis_client.xrange(streams.dead_letter_stream())
    return dead_id


@pytest.mark.parametrize("path", ["", "dead-letters/", "?partial=live"])
def test_every_dashboard_page_answers_with_a_poisoned_dead_letter(staff_browser, poisoned, path):
    response = staff_browser.get(DASHBOARD + path)

    assert response.status_code == 200
    assert f'value="delete:{poisoned}"' in response.content.decode() or path == ""


def test_the_poisoned_letter_can_be_deleted_from_the_dashboard(staff_browser, poisoned, redis_client):
    data = {"action": f"delete:{poisoned}", "confirmed": "yes", "next": DASHBOARD}

    response = staff_browser.post(DASHBOARD + "action/", data, follow=True)

    assert response.status_code == 200
    assert redis_client.xlen(streams.dead_letter_stream()) == 0


@pytest.mark.parametrize("raw", ["²", "٣", "1²", " 12", "0", "-4", "1" * 19, "0x1f"])
def test_rows_name_no_record_for_an_id_the_worker_refuses(raw):
    assert record_of({"entity": "deal", "id": raw}) is None
    assert record_of({"entity": "deal", "bitrix_id": raw}) is None
