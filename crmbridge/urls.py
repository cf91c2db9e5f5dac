"""Routes of the Bitrix bridge, included at the site root by ``bitrixsync/urls.py``."""

from bitrixsync.routes import slash_optional
from crmbridge.diagnostics.health import healthz, readyz
from crmbridge.diagnostics.metrics import metrics_view
from crmbridge.diagnostics.status_views import SyncStatusView, WorkerStatusView

urlpatterns = [
    *slash_optional("bitrix/sync/worker/status", WorkerStatusView, name="bitrix-worker-status"),
    *slash_optional("bitrix/sync/status", SyncStatusView, name="bitrix-sync-status"),
    *slash_optional("metrics", metrics_view, name="bitrix-metrics"),
    # Probes (Compose health checks, deploy/k8s): unauthenticated, no secrets.
    *slash_optional("healthz", healthz, name="healthz"),
    *slash_optional("readyz", readyz, name="readyz"),
]
