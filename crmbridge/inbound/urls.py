"""Route of the inbound endpoint; included at the site root (``path("", include("crmbridge.inbound.urls"))``)."""

from django.urls import path

from crmbridge.inbound.views import bitrix_webhook

urlpatterns = [
    path("bitrix/webhook", bitrix_webhook, name="bitrix-webhook"),
]
