"""URL map. Each app owns its routes; see the app's ``urls.py``.

API routes have no trailing slash (``/orders``, ``/profile``), as the
specification's curl examples use them; they also accept one: every route is
declared with ``bitrixsync.routes.slash_optional``.

The docs pages (Swagger UI, ReDoc) load their scripts from our static files
(drf-spectacular-sidecar), nothing from a CDN. Errors on API paths are JSON
(``bitrixsync.api_guard``).
"""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from bitrixsync.routes import slash_optional

urlpatterns = [
    path("admin/", admin.site.urls),
    *slash_optional("api/schema", SpectacularAPIView, name="schema"),
    *slash_optional("api/docs", SpectacularSwaggerView, name="swagger-ui", url_name="schema"),
    *slash_optional(
        "api/redoc", SpectacularRedocView, name="redoc", url_name="schema", template_name="api_docs/redoc.html"
    ),
    path("", include("accounts.urls")),
    path("", include("orders.urls")),
    # Bitrix diagnostics, metrics and inbound events (crmbridge issues).
    path("", include("crmbridge.urls")),
    path("", include("crmbridge.inbound.urls")),
]
