"""What the order and user admins show about the sync.

``BitrixSyncAdminMixin`` adds:

* ``bitrix``: the one "Bitrix24" column of the lists: the link below and the
  sync state under it (the Bitrix ID stays searchable);
* ``bitrix_link``: the Bitrix ID as a link to the record in the portal
  (``<portal>/crm/deal/details/<id>/`` or ``/crm/contact/details/<id>/``; the
  portal is ``BITRIX_PORTAL_URL`` or the webhook URL's host, never its code);
* ``sync_state``: synced / waiting / failed (with the last error) from
  ``SyncRecord``. ``get_queryset`` annotates the state with subqueries, so a
  changelist page costs one query, not one per row;
* ``resync_selected``: queues the selected records again
  (``crmbridge.publishing.resync.queue_resync_for``) and says how many.

Put the mixin first in the bases (``class OrderAdmin(BitrixSyncAdminMixin, admin.ModelAdmin)``)
and list the columns and the action explicitly.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.utils.html import format_html

from crmbridge import entities
from crmbridge.diagnostics.config_facts import portal_url
from crmbridge.models import SyncRecord

_STATE_STYLE = {"synced": "#2e7d32", "waiting": "#ef6c00", "failed": "#c62828"}


class BitrixSyncAdminMixin:
    bitrix_entity = ""  # "deal" or "contact" (``crmbridge.entities``); set by the subclass

    @property
    def bitrix_id_field(self) -> str:
        return entities.get(self.bitrix_entity).bitrix_id_field

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        records = SyncRecord.objects.filter(entity=self.bitrix_entity, local_id=OuterRef("pk"))
        return (
            super()
            .get_queryset(request)
            .annotate(
                _sync_state=Subquery(records.values("state")[:1]),
                _sync_error=Subquery(records.values("last_error")[:1]),
            )
        )

    @admin.display(description="Bitrix24")
    def bitrix(self, obj) -> str:
        """The link to the record in the portal, and the sync state below it: one column."""
        return format_html("{}<br><small>{}</small>", self.bitrix_link(obj), self.sync_state(obj))

    @admin.display(description="Bitrix ID")
    def bitrix_link(self, obj) -> str:
        bitrix_id = getattr(obj, self.bitrix_id_field, None)
        if not bitrix_id:
            return "-"
        portal = portal_url()
        if not portal:
            return str(bitrix_id)
        url = f"{portal}/crm/{self.bitrix_entity}/details/{int(bitrix_id)}/"
        return format_html(
            '<a href="{}" target="_blank" rel="noopener noreferrer" title="Open in Bitrix24" '
            'style="white-space:nowrap">{} {} ↗</a>',
            url, self.bitrix_entity, bitrix_id,
        )  # fmt: skip

    @admin.display(description="Sync state")
    def sync_state(self, obj) -> str:
        state, error = self._sync_facts(obj)
        if state is None:
            state = SyncRecord.State.SYNCED if getattr(obj, self.bitrix_id_field, None) else None
        if state is None:
            return "-"
        colour = _STATE_STYLE.get(state, "inherit")
        if state == SyncRecord.State.FAILED and error:
            short = error if len(error) <= 60 else error[:59] + "…"
            return format_html('<span style="color:{}" title="{}">failed: {}</span>', colour, error, short)
        return format_html('<span style="color:{}">{}</span>', colour, state)

    def _sync_facts(self, obj) -> tuple[str | None, str]:
        if hasattr(obj, "_sync_state"):
            return obj._sync_state, obj._sync_error or ""
        # Not loaded through get_queryset (mixin placed after ModelAdmin): one query for this row.
        record = SyncRecord.objects.filter(entity=self.bitrix_entity, local_id=obj.pk).first()
        return (record.state, record.last_error) if record else (None, "")

    @admin.action(description="Resync selected with Bitrix24")
    def resync_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        from crmbridge.publishing.resync import queue_resync_for

        ids = list(queryset.values_list("pk", flat=True))
        queued = queue_resync_for(self.bitrix_entity, ids)
        self.message_user(request, f"Queued {queued} {self.bitrix_entity} operation(s) for Bitrix24.", messages.SUCCESS)
