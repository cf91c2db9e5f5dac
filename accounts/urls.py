"""``/auth/register``, ``/auth/token``, ``/auth/logout``, ``/auth/logout-all``, ``/profile``.

No trailing slash, as the specification's curl examples use; the variant with
a slash is accepted too (left out of the schema so each operation appears once).
"""

from django.urls import path

from accounts import views

urlpatterns = [
    path("auth/register", views.RegisterApi.as_view(), name="auth-register"),
    path("auth/register/", views.RegisterApi.as_view(schema=None)),
    path("auth/token", views.TokenApi.as_view(), name="auth-token"),
    path("auth/token/", views.TokenApi.as_view(schema=None)),
    path("auth/logout", views.LogoutApi.as_view(), name="auth-logout"),
    path("auth/logout/", views.LogoutApi.as_view(schema=None)),
    path("auth/logout-all", views.LogoutAllApi.as_view(), name="auth-logout-all"),
    path("auth/logout-all/", views.LogoutAllApi.as_view(schema=None)),
    path("profile", views.ProfileApi.as_view(), name="profile"),
    path("profile/", views.ProfileApi.as_view(schema=None)),
]
