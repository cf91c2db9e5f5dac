"""Orders in the Django admin, with their Bitrix24 deal."""

from django.contrib import admin

from crmbridge.admin_sync import BitrixSyncAdminMixin
from orders.models import Order


@admin.register(Order)
class OrderAdmin(BitrixSyncAdminMixin, admin.ModelAdmin):
    bitrix_entity = "deal"

    list_display = (
        "id",
        "bitrix",  # the deal/contact link and sync state, where the eye starts
        "owner",
        "service_id",
        "quantity",
        "amount",
        "currency",
        "status",
        "created_at",
    )
    list_display_links = ("id",)
    list_filter = ("status", "service_id", "currency", "created_at")
    list_select_related = ("owner",)
    search_fields = ("=id", "owner__email", "owner__username", "material", "comment", "=bitrix_deal_id")
    date_hierarchy = "created_at"
    raw_id_fields = ("owner",)
    readonly_fields = ("bitrix_deal_id", "created_at", "updated_at")
    actions = ("resync_selected",)
    fieldsets = (
        (None, {"fields": ("owner", "service_id", "quantity", "material", "comment")}),
        ("Price and status", {"fields": ("amount", "currency", "status")}),
        ("Bitrix24", {"fields": ("bitrix_deal_id",)}),
        ("Dates", {"fields": ("created_at", "updated_at")}),
    )
