"""Route of the inbound endpoint; included at the site root (``path("", include("crmbridge.inbound.urls"))``)."""

from bitrixsync.routes import slash_optional
from crmbridge.inbound.views import bitrix_webhook

urlpatterns = [
    *slash_optional("bitrix/webhook", bitrix_webhook, name="bitrix-webhook"),
]
