"""The "Bitrix sync" admin dashboard: pages, permissions, and every button against real Redis."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from crmbridge.redis_io import contact_counts, streams
from tests.diagnostics.helpers import add_dead_letters, beat, create_group, deliver, publish

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/crmbridge/syncrecord/dashboard/"
ACTION = DASHBOARD + "action/"
OPS = streams.operations_stream
SECTIONS = (
    "bitrix-streams", "bitrix-workers", "bitrix-consumers-operations", "bitrix-pending-operations",
    "bitrix-dead-letters", "bitrix-recent-operations", "bitrix-worker-config", "bitrix-config",
)  # fmt: skip


def texts(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def confirm(client: Client, action: str, ids: list[str] = (), stream: str = "operations"):
    """POST the confirmed form, as the confirmation page's "Yes, I'm sure" does; follow the redirect."""
    data = {"action": action, "ids": list(ids), "stream": stream, "confirmed": "yes", "next": DASHBOARD}
    return client.post(ACTION, data, follow=True)


def test_dashboard_shows_every_section(staff_browser, redis_client, secret_webhook):
    create_group(redis_client)
    publish(redis_client, 4)
    deliver(redis_client, 2)
    add_dead_letters(redis_client, 1)
    beat(redis_client, "worker_h-42", state="paused", pause_reason="NO_AUTH_FOUND")

    response = staff_browser.get(DASHBOARD)

    assert response.status_code == 200
    page = response.content.decode()
    for section in SECTIONS:
        assert f'id="{section}"' in page
    assert "worker_h-42" in page and "NO_AUTH_FOUND" in page
    assert "<svg" in page and "<polyline" in page
    assert "https://example.bitrix24.test/rest/1/****/" in page
    assert secret_webhook not in page
    assert 'value="retry_pending:' in page and 'value="requeue:' in page and 'value="test_connection"' in page


def test_dashboard_counts_adopted_and_created_contacts(staff_browser, redis_client):
    """Issue 20, item 8: the summary shows contacts adopted (by e-mail, by phone, ambiguous) and created."""
    contact_counts.add(redis_client, {"adopted_email": 4, "adopted_phone": 2, "ambiguous": 1, "created": 9})

    page = staff_browser.get(DASHBOARD).content.decode()

    tile = page[page.index('id="bitrix-contacts"') :]
    tile = tile[: tile.index("</div>")]
    assert "6 adopted" in tile
    assert "by e-mail 4, by phone 2, ambiguous 1; created 9" in tile


def test_dashboard_is_listed_in_the_admin_index_and_its_link_leads_there(staff_browser):
    index = staff_browser.get("/admin/")
    entry = next(m for app in index.context["app_list"] for m in app["models"] if m["name"] == "Bitrix sync dashboard")
    assert entry["admin_url"] in index.content.decode()
    response = staff_browser.get(entry["admin_url"])
    assert response.status_code == 302 and response["Location"] == DASHBOARD


def test_dashboard_entry_is_a_registered_placeholder_model_not_a_patched_index():
    from django.contrib import admin

    from crmbridge.models import BitrixSyncDashboard

    assert admin.site.is_registered(BitrixSyncDashboard)
    assert BitrixSyncDashboard._meta.managed is False
    assert "get_app_list" not in vars(admin.site)


def test_staff_without_the_view_permission_see_no_dashboard_entry(client, plain_staff):
    client.force_login(plain_staff)
    index = client.get("/admin/")
    assert "Bitrix sync dashboard" not in index.content.decode()


def test_dashboard_page_stays_bounded_with_a_large_backlog(staff_browser, redis_client):
    create_group(redis_client)
    publish(redis_client, 3000)
    deliver(redis_client, 2000)

    page = staff_browser.get(DASHBOARD).content.decode()

    assert page.count('class="bitrix-row-button" name="action" value="retry_pending:') == 25
    assert "All pending messages, page by page" in page


def test_pending_pages_follow_the_cursor(staff_browser, redis_client):
    create_group(redis_client)
    ids = publish(redis_client, 30)
    deliver(redis_client, 30)

    first = staff_browser.get(DASHBOARD + "pending/?stream=operations")
    second = staff_browser.get(DASHBOARD + "pending/", {"stream": "operations", "after": first.context["next_after"]})

    assert [row["id"] for row in first.context["pending"]] == ids[:25]
    assert [row["id"] for row in second.context["pending"]] == ids[25:]
    assert second.context["next_after"] is None


def test_dead_letter_pages_are_newest_first(staff_browser, redis_client):
    dead_ids = add_dead_letters(redis_client, 27)

    first = staff_browser.get(DASHBOARD + "dead-letters/")
    second = staff_browser.get(DASHBOARD + "dead-letters/", {"before": first.context["next_before"]})

    assert [row["id"] for row in first.context["dead_letters"]] == dead_ids[::-1][:25]
    assert [row["id"] for row in second.context["dead_letters"]] == dead_ids[::-1][25:]


def test_a_hand_written_dead_letter_with_odd_fields_is_shown_not_a_500(staff_browser, redis_client):
    """Dead letters may come from a script or an older version: any field may be odd."""
    redis_client.xadd(streams.dead_letter_stream(), {"payload": "not json", "attempts": "many", "reason": "manual"})

    page = staff_browser.get(DASHBOARD + "dead-letters/")

    assert page.status_code == 200
    (row,) = page.context["dead_letters"]
    assert row["attempts"] == 0 and row["payload"] == {"raw": "not json"}


def test_non_staff_are_sent_to_the_login_page(alice):
    client = Client()
    client.force_login(alice)

    response = client.get(DASHBOARD)

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_staff_without_permission_get_403(plain_staff):
    client = Client()
    client.force_login(plain_staff)

    assert client.get(DASHBOARD).status_code == 403
    assert client.post(ACTION, {"action": "requeue_all", "confirmed": "yes"}).status_code == 403


def test_view_permission_shows_the_page_without_buttons(plain_staff, redis_client):
    plain_staff.user_permissions.add(Permission.objects.get(codename="view_syncrecord"))
    add_dead_letters(redis_client, 1)
    client = Client()
    client.force_login(plain_staff)

    page = client.get(DASHBOARD).content.decode()

    assert 'value="requeue:' not in page
    assert client.post(ACTION, {"action": "requeue_all", "confirmed": "yes"}).status_code == 403
    assert redis_client.xlen(streams.dead_letter_stream()) == 1


def test_an_unconfirmed_post_only_asks(staff_browser, redis_client):
    dead_ids = add_dead_letters(redis_client, 1)

    response = staff_browser.post(ACTION, {"action": f"delete:{dead_ids[0]}", "next": DASHBOARD})

    assert response.status_code == 200
    assert 'id="bitrix-confirm-yes"' in response.content.decode()
    assert response.context["ids"] == dead_ids
    assert redis_client.xlen(streams.dead_letter_stream()) == 1


def test_actions_need_csrf(admin_user, redis_client):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)

    assert client.post(ACTION, {"action": "requeue_all", "confirmed": "yes"}).status_code == 403


def test_a_get_on_the_action_url_changes_nothing(staff_browser, redis_client):
    add_dead_letters(redis_client, 1)

    assert staff_browser.get(ACTION, {"action": "requeue_all", "confirmed": "yes"}).status_code == 302
    assert redis_client.xlen(streams.dead_letter_stream()) == 1


def test_retry_now_adds_a_copy_and_acknowledges_the_original(staff_browser, redis_client):
    create_group(redis_client)
    publish(redis_client, 2)
    (entry_id, fields), _ = deliver(redis_client, 2)

    response = confirm(staff_browser, "retry_pending", [entry_id])

    assert texts(response) == ["Retried 1 of 1 pending message(s) now."]
    pending_ids = [row["message_id"] for row in redis_client.xpending_range(OPS(), streams.GROUP, "-", "+", 10)]
    assert entry_id not in pending_ids and len(pending_ids) == 1
    _newest_id, newest = redis_client.xrevrange(OPS(), count=1)[0]
    assert newest == {**fields, "retried_from": entry_id}
    assert redis_client.xinfo_groups(OPS())[0]["lag"] == 1


def test_retry_now_skips_what_is_no_longer_pending(staff_browser, redis_client):
    create_group(redis_client)
    publish(redis_client, 1)
    ((entry_id, _fields),) = deliver(redis_client, 1)
    redis_client.xack(OPS(), streams.GROUP, entry_id)

    response = confirm(staff_browser, "retry_pending", [entry_id])

    assert texts(response) == ["Retried 0 of 1 pending message(s) now."]
    assert redis_client.xlen(OPS()) == 1


def test_move_to_dead_letters_is_manual_and_acknowledges(staff_browser, redis_client):
    create_group(redis_client)
    publish(redis_client, 1)
    ((entry_id, _fields),) = deliver(redis_client, 1, consumer="worker_x-7")

    response = confirm(staff_browser, "dead_pending", [entry_id])

    assert texts(response) == ["Moved 1 of 1 pending message(s) to the dead letters."]
    assert redis_client.xpending(OPS(), streams.GROUP)["pending"] == 0
    ((_dead_id, letter),) = redis_client.xrange(streams.dead_letter_stream())
    assert letter["reason"] == "manual"
    assert letter["source_id"] == entry_id
    assert letter["consumer"] == "worker_x-7"
    assert letter["attempts"] == "1"


def test_requeue_puts_a_dead_letter_back_on_its_stream(staff_browser, redis_client):
    dead_ids = add_dead_letters(redis_client, 2)
    before = redis_client.xlen(OPS())

    response = confirm(staff_browser, f"requeue:{dead_ids[0]}")

    assert texts(response) == ["Requeued 1 of 1 dead letter(s)."]
    assert redis_client.xlen(OPS()) == before + 1
    assert redis_client.xrevrange(OPS(), count=1)[0][1]["requeued_from"] == dead_ids[0]
    assert [i for i, _ in redis_client.xrange(streams.dead_letter_stream())] == dead_ids[1:]


def test_requeue_all_empties_the_dead_letters_in_batches(staff_browser, redis_client):
    add_dead_letters(redis_client, 230)
    before = redis_client.xlen(OPS())

    response = confirm(staff_browser, "requeue_all")

    assert texts(response) == ["Requeued 230 dead letter(s); 0 left in the dead letters."]
    assert redis_client.xlen(streams.dead_letter_stream()) == 0
    assert redis_client.xlen(OPS()) == before + 230


def test_delete_removes_dead_letters(staff_browser, redis_client):
    dead_ids = add_dead_letters(redis_client, 3)

    response = confirm(staff_browser, "delete", dead_ids[:2])

    assert texts(response) == ["Deleted 2 of 2 dead letter(s)."]
    assert [i for i, _ in redis_client.xrange(streams.dead_letter_stream())] == dead_ids[2:]


def test_test_connection_reports_ok(staff_browser, sandbox):
    response = confirm(staff_browser, "test_connection")

    (text,) = texts(response)
    assert text.startswith("Bitrix connection OK")


def test_test_connection_reports_a_refused_webhook_as_configuration(staff_browser, sandbox):
    sandbox.set_faults(auth_error="expired_token")

    response = confirm(staff_browser, "test_connection")

    (text,) = texts(response)
    assert text.startswith("Bitrix connection failed (config)")
    assert sandbox.webhook_url.split("/rest/1/")[1].strip("/") not in response.content.decode()


def test_redis_down_shows_the_reason_not_a_500(staff_browser, private_redis):
    private_redis.stop()

    response = staff_browser.get(DASHBOARD)

    assert response.status_code == 200
    assert 'id="redis-error"' in response.content.decode()
    assert "Redis is unreachable" in response.content.decode()


def test_an_action_with_redis_down_reports_the_failure(staff_browser, private_redis):
    private_redis.stop()

    response = confirm(staff_browser, "requeue_all")

    assert texts(response)[0].startswith("Requeue all dead letters failed: Redis is unreachable")


# Issue 15: the summary tells the truth, pages stay small, the live part refreshes. -------------


def test_the_verdict_is_not_green_while_every_call_fails(staff_browser, redis_client, sandbox):
    from tests.diagnostics.helpers import mark

    create_group(redis_client)
    beat(redis_client)  # the worker is running...
    mark(redis_client, "success", ago=600)
    mark(redis_client, "failure", ago=1, detail="HTTP 503 from the portal")  # ...and every call fails

    page = staff_browser.get(DASHBOARD).content.decode()

    assert 'data-level="warn"' in page
    assert "failures.recent" in page and "HTTP 503 from the portal" in page


def test_a_healthy_system_is_green(staff_browser, redis_client, sandbox):
    create_group(redis_client)
    beat(redis_client)

    page = staff_browser.get(DASHBOARD).content.decode()

    assert 'data-level="ok"' in page and "Healthy" in page
    assert 'id="bitrix-problems"' not in page


def test_a_skipped_check_is_neither_ok_nor_a_problem(staff_browser, redis_client, sandbox):
    """Issue 19 item 13: the portal call is skipped on the dashboard; "13 of 14 OK" read as one failing."""
    create_group(redis_client)
    beat(redis_client)

    response = staff_browser.get(DASHBOARD)

    verdict = response.context["verdict"]
    assert verdict["skipped"] >= 1 and verdict["passed"] == verdict["total"]  # the portal calls
    shown = f"{verdict['passed']} of {verdict['total']} checks OK, {verdict['skipped']} skipped"
    assert shown in response.content.decode()


def test_no_worker_is_a_failing_verdict_naming_the_worker(staff_browser, redis_client, sandbox):
    create_group(redis_client)

    page = staff_browser.get(DASHBOARD).content.decode()

    assert 'data-level="fail"' in page and "worker.heartbeat" in page


def test_a_3_mb_payload_stays_out_of_the_page_and_has_its_own_url(staff_browser, redis_client):
    from crmbridge.worker.dead_letters import DeadLetter, move_to_dead_letters

    create_group(redis_client)
    payload = {"entity": "deal", "op": "create", "id": "7", "comment": "x" * 3_000_000}
    move_to_dead_letters(
        redis_client, [DeadLetter(source_stream=OPS(), source_id="1-1", payload=payload, reason="permanent_error")]
    )
    (dead_id,) = [entry_id for entry_id, _ in redis_client.xrange(streams.dead_letter_stream())]

    page = staff_browser.get(DASHBOARD)
    whole = staff_browser.get(f"{DASHBOARD}dead-letters/{dead_id}/")

    assert len(page.content) < 200_000
    assert "whole payload (2.9 MB)" in page.content.decode()
    assert "/admin/orders/order/7/change/" in page.content.decode()
    assert whole.status_code == 200 and whole["Content-Type"].startswith("application/json")
    assert len(whole.json()["payload"]["comment"]) == 3_000_000
    assert whole.json()["first_seen"] == ""  # as stored; the table shows the source entry's time
    assert "1970-01-01 00:00:00" in page.content.decode()  # first seen from source ID 1-1


def test_a_dead_letter_as_json_needs_view_permission_and_a_valid_id(staff_browser, plain_staff):
    client = Client()
    client.force_login(plain_staff)

    assert client.get(f"{DASHBOARD}dead-letters/1-0/").status_code == 403
    assert staff_browser.get(f"{DASHBOARD}dead-letters/1-0/").status_code == 404
    assert staff_browser.get(f"{DASHBOARD}dead-letters/not-an-id/").status_code == 404


def test_requeue_all_is_offered_only_with_dead_letters(staff_browser, redis_client):
    assert 'value="requeue_all"' not in staff_browser.get(DASHBOARD).content.decode()

    add_dead_letters(redis_client, 1)

    assert 'value="requeue_all"' in staff_browser.get(DASHBOARD).content.decode()


def test_the_live_part_is_served_alone_and_its_forms_come_back_to_the_dashboard(staff_browser, redis_client):
    add_dead_letters(redis_client, 1)

    live = staff_browser.get(DASHBOARD + "?partial=live").content.decode()

    assert 'id="bitrix-summary"' in live and 'id="bitrix-dead-letters"' in live
    assert "<html" not in live and 'id="bitrix-config"' not in live
    assert f'name="next" value="{DASHBOARD}"' in live
    assert "partial=live" not in live.split('name="next"')[1][:100]


def test_pending_rows_name_their_record(staff_browser, redis_client):
    create_group(redis_client)
    publish(redis_client, 2, entity="contact")
    deliver(redis_client, 2)

    page = staff_browser.get(DASHBOARD).content.decode()

    assert "/admin/accounts/user/1/change/" in page and "/admin/accounts/user/2/change/" in page


# Issue 19 item 13: the confirmation names the record of every message it lists. --------------


def confirmation_rows(response) -> list[str]:
    import re

    body = response.content.decode().split('id="bitrix-confirm"')[1].split("</ul>")[0]
    return [re.sub(r"<[^>]+>|\s+", " ", item).split() for item in body.split("<li>")[1:]]


def test_the_requeue_confirmation_names_each_letters_record(staff_browser, redis_client):
    dead_ids = add_dead_letters(redis_client, 2)

    response = staff_browser.post(ACTION, {"action": "requeue", "ids": dead_ids, "next": DASHBOARD})

    rows = confirmation_rows(response)
    assert [row[0] for row in rows] == dead_ids
    assert [" ".join(row[1:]) for row in rows] == ["deal: order 1", "deal: order 2"]


def test_the_confirmation_of_pending_messages_names_their_records(staff_browser, redis_client):
    create_group(redis_client)
    publish(redis_client, 1, entity="contact")
    ((entry_id, _),) = deliver(redis_client, 1)

    response = staff_browser.post(ACTION, {"action": f"retry_pending:{entry_id}", "next": DASHBOARD})

    assert confirmation_rows(response) == [[entry_id, "contact:", "user", "1"]]


def test_the_confirmation_says_when_a_message_names_no_valid_record(staff_browser, redis_client):
    redis_client.xadd(streams.dead_letter_stream(), {"payload": '{"entity": "deal", "id": "\\u00b2"}'})
    ((dead_id, _),) = redis_client.xrange(streams.dead_letter_stream())
    gone = "1-1"

    response = staff_browser.post(ACTION, {"action": "delete", "ids": [dead_id, gone], "next": DASHBOARD})

    assert confirmation_rows(response) == [
        [dead_id, "no", "valid", "record", "(deal", "²)"],
        [gone, "no", "longer", "there"],
    ]
