"""Routes of the Bitrix bridge, included at the site root by ``bitrixsync/urls.py``."""

from django.urls import path

from crmbridge.diagnostics.metrics import metrics_view
from crmbridge.diagnostics.status_views import SyncStatusView, WorkerStatusView

urlpatterns = [
    path("bitrix/sync/worker/status", WorkerStatusView.as_view(), name="bitrix-worker-status"),
    path("bitrix/sync/status", SyncStatusView.as_view(), name="bitrix-sync-status"),
    path("metrics", metrics_view, name="bitrix-metrics"),
]
