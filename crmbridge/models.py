"""Database tables of the Bitrix bridge.

* ``OutboxEntry``: an operation written in the same transaction as the change
  that caused it, relayed to the Redis stream after commit (or later, by the
  relay, when Redis was down). Nothing is lost between the database and Redis.
* ``SyncRecord``: per record, what the sync knows beyond the Bitrix ID kept on
  the record itself: its state for the admin, the last error, and the marker
  that a create may have reached Bitrix (so a retry looks before it adds).
"""

import uuid

from django.db import models


class OutboxEntry(models.Model):
    """One operation waiting to be added to a stream (see ``crmbridge.publishing.outbox``).

    A row is claimed by whoever is publishing it until ``claimed_until``: the
    request that wrote it (for a few seconds after its commit) or a relay.
    Claims only keep two publishers from doing the same work; exactly-once
    comes from ``dedup_key``, the Redis marker set in the same step as XADD.
    """

    stream = models.CharField(max_length=64, default="operations", help_text="stream name without the prefix")
    fields = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=64, blank=True, help_text="who holds the claim: request or relay name")
    # Names the Redis "already sent" marker. A UUID rather than the row ID, so
    # that a database restored from a backup (IDs reused) is never mistaken
    # for rows already sent.
    dedup_key = models.UUIDField(default=uuid.uuid4, editable=False)

    class Meta:
        ordering = ("id",)
        verbose_name_plural = "outbox entries"

    def __str__(self) -> str:
        return f"outbox #{self.pk} -> {self.stream}"


class SyncRecord(models.Model):
    class Entity(models.TextChoices):
        DEAL = "deal", "Deal (order)"
        CONTACT = "contact", "Contact (user)"

    class State(models.TextChoices):
        WAITING = "waiting", "Waiting"
        SYNCED = "synced", "Synced"
        FAILED = "failed", "Failed"

    entity = models.CharField(max_length=16, choices=Entity.choices)
    local_id = models.BigIntegerField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.WAITING)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_queued_at = models.DateTimeField(null=True, blank=True)
    # Set before an add is sent, cleared when the new ID is written back. Found
    # set by a later attempt, it means an add may have reached Bitrix: look up
    # the record by ORIGIN_ID before adding again.
    create_started_at = models.DateTimeField(null=True, blank=True)
    # Inbound events: the portal time (``ts``) of the last event applied.
    remote_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("entity", "local_id"), name="syncrecord_entity_local_id")]
        indexes = [models.Index(fields=("state",))]

    def __str__(self) -> str:
        return f"{self.entity} {self.local_id}: {self.state}"


class BitrixSyncDashboard(models.Model):
    """No table: gives the admin dashboard its entry in the admin index (as django-rq does).

    ``crmbridge.admin.BitrixSyncDashboardAdmin`` lists it for users who may view
    the dashboard and sends its link to the dashboard's pages.
    """

    class Meta:
        managed = False
        default_permissions = ()
        verbose_name = "Bitrix sync dashboard"
        verbose_name_plural = "Bitrix sync dashboard"

    def __str__(self) -> str:
        return "Bitrix sync dashboard"
