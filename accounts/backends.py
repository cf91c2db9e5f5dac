"""Sign in with the username or the e-mail address (the admin's login, ``authenticate()``).

``./run.sh`` announces the dev admin by its e-mail (``DEV_ADMIN_EMAIL``), and
``/auth/token`` takes an e-mail too, so the admin login accepts either. An
exact username match wins (usernames may contain "@"); otherwise a login with
"@" is looked up by e-mail, case-insensitively. Django's ``ModelBackend`` does
the rest, including hashing the password for unknown logins (same timing).
"""

from __future__ import annotations

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend


class EmailOrUsernameBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        user_model = get_user_model()
        if username and "@" in username and not user_model._default_manager.filter(username=username).exists():
            match = user_model._default_manager.filter(email__iexact=username.strip()).order_by("id").first()
            if match is not None:
                username = match.get_username()
        return super().authenticate(request, username=username, password=password, **kwargs)


class EmailOrUsernameAdminLoginForm(AdminAuthenticationForm):
    """The admin's login form, labelled for what it accepts."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].label = "Username or e-mail"
