"""Which saves queue what: Bitrix fields only, ``update_fields`` honoured, no feedback loop."""

from __future__ import annotations

import pytest
from django.utils import timezone

from orders.models import Order
from tests.publishing.helpers import make_order, make_user, published, unsent

pytestmark = pytest.mark.django_db


@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    """Run what the test did as if its transaction committed (the ``db`` fixture never commits)."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def frank(django_user_model, commit):
    with commit():
        return make_user(django_user_model, "frank")


@pytest.fixture
def order(frank, commit):
    with commit():
        return make_order(frank)


def queued_by(commit, redis_client, action) -> list[tuple[str, str, int, str]]:
    """What ``action()`` published (stream entries) - and check it left nothing unsent in the outbox."""
    before = len(published(redis_client))
    with commit():
        action()
    assert unsent(redis_client) == []
    return published(redis_client)[before:]


def test_change_to_a_field_bitrix_does_not_receive_queues_nothing(frank, order, commit, redis_client):
    def change():
        frank.is_staff = True
        frank.save()
        frank.last_login = timezone.now()
        frank.save(update_fields=["last_login"])
        order.save()  # nothing changed at all

    assert queued_by(commit, redis_client, change) == []


def test_login_queues_nothing(frank, commit, redis_client, client):
    assert queued_by(commit, redis_client, lambda: client.login(username="frank", password="S3cure-pass-1")) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("service_id", "welding"),
        ("quantity", 9),
        ("material", "steel"),
        ("comment", "rush"),
        ("amount", "12.50"),
        ("currency", "EUR"),
        ("status", "confirmed"),
    ],
)
def test_each_bitrix_field_of_an_order_queues_one_update(order, commit, redis_client, field, value):
    def change():
        setattr(order, field, value)
        order.save()

    assert queued_by(commit, redis_client, change) == [("deal", "update", order.pk, "signal")]


def test_new_owner_queues_an_update(order, django_user_model, commit, redis_client):
    with commit():
        grace = make_user(django_user_model, "grace")

    def change():
        order.owner = grace
        order.save(update_fields=["owner"])

    assert queued_by(commit, redis_client, change) == [("deal", "update", order.pk, "signal")]


def test_update_fields_without_the_changed_bitrix_field_queues_nothing(order, commit, redis_client):
    def change():
        order.quantity = 99  # changed in memory, but this save does not write it
        order.save(update_fields=["updated_at"])

    assert queued_by(commit, redis_client, change) == []


def test_update_fields_with_an_unchanged_bitrix_field_queues_nothing(order, commit, redis_client):
    assert queued_by(commit, redis_client, lambda: order.save(update_fields=["quantity", "comment"])) == []


def test_update_fields_with_a_changed_bitrix_field_queues_an_update(frank, commit, redis_client):
    def change():
        frank.phone = "+15550101"
        frank.save(update_fields=["phone"])

    assert queued_by(commit, redis_client, change) == [("contact", "update", frank.pk, "signal")]


def test_a_loaded_record_compares_with_its_loaded_values(order, commit, redis_client):
    def change():
        loaded = Order.objects.get(pk=order.pk)
        loaded.save()  # unchanged: nothing
        loaded.comment = "second thoughts"
        loaded.save()  # one update
        loaded.save()  # unchanged since the last save: nothing

    assert queued_by(commit, redis_client, change) == [("deal", "update", order.pk, "signal")]


def test_deferred_fields(order, commit, redis_client):
    def change():
        partial = Order.objects.only("id", "comment").get(pk=order.pk)
        partial.save()  # writes only comment, unchanged
        partial.comment = "changed"
        partial.save()

    assert queued_by(commit, redis_client, change) == [("deal", "update", order.pk, "signal")]


def test_worker_write_back_queues_nothing(frank, order, commit, redis_client):
    def write_back():
        Order.objects.filter(pk=order.pk).update(bitrix_deal_id=5)
        type(frank).objects.filter(pk=frank.pk).update(bitrix_contact_id=6)
        order.bitrix_deal_id = 5
        order.save()
        order.bitrix_deal_id = 8
        order.save(update_fields=["bitrix_deal_id"])
        frank.bitrix_contact_id = 6
        frank.save()

    assert queued_by(commit, redis_client, write_back) == []


def test_bulk_create_sends_no_signal(frank, commit, redis_client):
    def bulk():
        Order.objects.bulk_create([Order(owner=frank, service_id="welding", quantity=1)])

    assert queued_by(commit, redis_client, bulk) == []  # bitrix_resync covers these
