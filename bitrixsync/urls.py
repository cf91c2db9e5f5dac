"""URL map. Each app owns its routes; see the app's ``urls.py``.

API routes have no trailing slash (``/orders``, ``/profile``), as the
specification's curl examples use them; they also accept one.

The docs pages (Swagger UI, ReDoc) load their scripts from our static files
(drf-spectacular-sidecar), nothing from a CDN. Errors on API paths are JSON
(``bitrixsync.api_guard``).
"""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path(
        "api/redoc", SpectacularRedocView.as_view(url_name="schema", template_name="api_docs/redoc.html"), name="redoc"
    ),
    path("", include("accounts.urls")),
    path("", include("orders.urls")),
    # Bitrix diagnostics, metrics and inbound events (crmbridge issues).
    path("", include("crmbridge.urls")),
    path("", include("crmbridge.inbound.urls")),
]
