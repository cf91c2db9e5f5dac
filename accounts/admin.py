"""Users in the Django admin, with their Bitrix24 contact."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from accounts.backends import EmailOrUsernameAdminLoginForm
from accounts.models import User
from crmbridge.admin_sync import BitrixSyncAdminMixin


@admin.register(User)
class UserAdmin(BitrixSyncAdminMixin, DjangoUserAdmin):
    bitrix_entity = "contact"

    list_display = (
        "id",
        "bitrix",  # the deal/contact link and sync state, where the eye starts
        "email",
        "username",
        "first_name",
        "last_name",
        "phone",
        "is_staff",
        "is_active",
        "date_joined",
    )
    list_display_links = ("id", "email")
    list_filter = ("is_staff", "is_superuser", "is_active", "date_joined", "groups")
    search_fields = ("email", "username", "first_name", "last_name", "phone", "=bitrix_contact_id")
    ordering = ("-id",)
    actions = ("resync_selected",)
    readonly_fields = ("bitrix_contact_id", "last_login", "date_joined")
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email", "phone")}),
        ("Bitrix24", {"fields": ("bitrix_contact_id",)}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("username", "email", "first_name", "last_name", "phone", "password1", "password2"),
            },
        ),
    )


admin.site.login_form = EmailOrUsernameAdminLoginForm  # "Username or e-mail" (accounts/backends.py)
