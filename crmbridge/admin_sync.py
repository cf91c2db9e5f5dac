"""What the order and user admins show about the sync (stub; diagnostics fills it in).

``BitrixSyncAdminMixin`` adds ``bitrix_link`` and ``sync_state`` columns and a
``resync_selected`` action. Model admins list them explicitly.
"""

from django.contrib import admin


class BitrixSyncAdminMixin:
    bitrix_entity = ""  # "deal" or "contact"; set by the subclass
    bitrix_id_field = ""  # "bitrix_deal_id" or "bitrix_contact_id"

    @admin.display(description="Bitrix ID")
    def bitrix_link(self, obj):
        return getattr(obj, self.bitrix_id_field, None) or "-"

    @admin.display(description="Sync state")
    def sync_state(self, obj):
        return "-"

    @admin.action(description="Resync selected with Bitrix24")
    def resync_selected(self, request, queryset):
        self.message_user(request, "Not implemented yet.")
