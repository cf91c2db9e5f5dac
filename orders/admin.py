"""Orders in the Django admin, with their Bitrix24 deal.

The list fits a 1280 px screen (tests/diagnostics/test_orders_admin_layout_browser.py).
With the admin's navigation sidebar and the filter sidebar open, about 630 px were
left for nine columns, and the status column sat out of sight behind the list's
sideways scroll. So the list page drops the navigation sidebar, as the sync
dashboard does (the breadcrumbs lead back; the filters stay), the owner's e-mail
is cut with an ellipsis (whole in its tooltip), amount and currency share a
column, and the date is short.
"""

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html

from crmbridge.admin_sync import BitrixSyncAdminMixin
from orders.models import Order

# An inline style: the admin has no CSS of ours to put a class in.
_CLIP = (
    "display:inline-block;max-width:12em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;vertical-align:top"
)


@admin.register(Order)
class OrderAdmin(BitrixSyncAdminMixin, admin.ModelAdmin):
    bitrix_entity = "deal"

    list_display = (
        "id",
        "bitrix",  # the deal/contact link and sync state, where the eye starts
        "owner_email",
        "service_id",
        "quantity",
        "price",
        "status",
        "created",
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

    def changelist_view(self, request, extra_context=None):
        # The table gets the page's width (see the module docstring).
        return super().changelist_view(request, {**(extra_context or {}), "is_nav_sidebar_enabled": False})

    @admin.display(description="Owner", ordering="owner__email")
    def owner_email(self, obj: Order) -> str:
        email = obj.owner.email or obj.owner.get_username()
        return format_html('<span style="{}" title="{}">{}</span>', _CLIP, email, email)

    @admin.display(description="Amount", ordering="amount")
    def price(self, obj: Order) -> str:
        return "-" if obj.amount is None else f"{obj.amount} {obj.currency}"

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj: Order) -> str:
        local = timezone.localtime(obj.created_at)
        day, time = local.strftime("%Y-%m-%d"), local.strftime("%H:%M")
        return format_html('<span style="white-space:nowrap">{}</span><br><small>{}</small>', day, time)
