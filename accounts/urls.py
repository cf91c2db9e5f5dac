"""``/auth/register``, ``/auth/token``, ``/auth/logout``, ``/auth/logout-all``, ``/profile``.

No trailing slash, as the specification's curl examples use; the variant with
a slash is accepted too (left out of the schema so each operation appears once).
"""

from accounts import views
from bitrixsync.routes import slash_optional

urlpatterns = [
    *slash_optional("auth/register", views.RegisterApi, name="auth-register"),
    *slash_optional("auth/token", views.TokenApi, name="auth-token"),
    *slash_optional("auth/logout", views.LogoutApi, name="auth-logout"),
    *slash_optional("auth/logout-all", views.LogoutAllApi, name="auth-logout-all"),
    *slash_optional("profile", views.ProfileApi, name="profile"),
]
