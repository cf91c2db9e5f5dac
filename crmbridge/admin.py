"""The Bitrix bridge in the Django admin.

* ``SyncRecord`` and ``OutboxEntry``: read-only lists (they are records the
  sync keeps, not something to edit by hand).
* The "Bitrix sync" dashboard (``crmbridge.diagnostics.dashboard_views``):
  mounted under the SyncRecord admin's URLs and linked from its list page; the
  admin index lists it through the unmanaged placeholder model
  ``BitrixSyncDashboard`` (no table, no permissions of its own), for users
  allowed to see it.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from crmbridge.diagnostics import dashboard_views
from crmbridge.models import BitrixSyncDashboard, OutboxEntry, SyncRecord


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(SyncRecord)
class SyncRecordAdmin(ReadOnlyAdmin):
    list_display = ("entity", "local_id", "state", "short_error", "last_error_at", "last_synced_at", "last_queued_at")
    list_filter = ("entity", "state")
    search_fields = ("=local_id", "last_error")
    ordering = ("-id",)
    change_list_template = "admin/crmbridge/syncrecord/change_list.html"

    @admin.display(description="Last error")
    def short_error(self, obj: SyncRecord) -> str:
        if not obj.last_error:
            return "-"
        text = obj.last_error if len(obj.last_error) <= 80 else obj.last_error[:79] + "…"
        return format_html('<span title="{}">{}</span>', obj.last_error, text)

    def get_urls(self):
        def wrap(view):
            return self.admin_site.admin_view(lambda request: view(request, self.admin_site))

        routes = [
            path("dashboard/", wrap(dashboard_views.dashboard_view), name="crmbridge_dashboard"),
            path("dashboard/pending/", wrap(dashboard_views.pending_view), name="crmbridge_dashboard_pending"),
            path("dashboard/dead-letters/", wrap(dashboard_views.dead_letters_view), name="crmbridge_dashboard_dead"),
            path(
                "dashboard/dead-letters/<str:dead_id>/",
                self.admin_site.admin_view(
                    lambda request, dead_id: dashboard_views.dead_letter_view(request, self.admin_site, dead_id)
                ),
                name="crmbridge_dashboard_dead_letter",
            ),
            path("dashboard/action/", wrap(dashboard_views.action_view), name="crmbridge_dashboard_action"),
        ]
        return routes + super().get_urls()


@admin.register(OutboxEntry)
class OutboxEntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "stream", "fields", "created_at", "attempts", "short_error", "claimed_until")
    list_filter = ("stream",)
    ordering = ("id",)

    @admin.display(description="Last error")
    def short_error(self, obj: OutboxEntry) -> str:
        return (obj.last_error[:80] + "…") if len(obj.last_error) > 80 else (obj.last_error or "-")


@admin.register(BitrixSyncDashboard)
class BitrixSyncDashboardAdmin(ReadOnlyAdmin):
    """The dashboard's entry in the admin index: a placeholder model with no table.

    Listed for users who may view the dashboard (``crmbridge.view_syncrecord``);
    its link leads to the dashboard, whose pages stay under the SyncRecord
    admin's URLs (``/admin/crmbridge/syncrecord/dashboard/``).
    """

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return dashboard_views.can_view(request)

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse(f"{self.admin_site.name}:crmbridge_dashboard"))
