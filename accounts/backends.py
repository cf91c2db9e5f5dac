"""Sign in with the username or the e-mail address: one rule for ``/auth/token`` and ``/admin/login/``.

``./run.sh`` announces the dev admin by its e-mail (``DEV_ADMIN_EMAIL``), and
``/auth/token`` takes an e-mail too, so every sign-in accepts either
(``account_for``):

* an identifier with "@" that is some account's e-mail address (after NFKC and
  IDNA normalisation, any case) names **that account**, whichever field it was
  typed in. The e-mail wins over a username spelled the same: a username with
  "@" may only be the account's own e-mail (``User.clean``), so a match on
  someone else's address is an account from before that rule, or an attempt to
  pass for its owner;
* otherwise the username, exactly (Django's usernames are case-sensitive).

Failed sign-ins are counted per account (``failure_budget``): the e-mail and the
username of one account share one budget, on ``/auth/token`` and ``/admin/login/``
alike (``EmailOrUsernameAdminLoginForm.clean``). An identifier that names no account
has a budget of its own (its normalised spelling): there is nothing to protect,
and the per-address limit still applies.

Unknown identifiers still cost one password hash, as in Django's
``ModelBackend``: the answer takes as long whether the account exists or not.
"""

from __future__ import annotations

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import ValidationError

from accounts.normalization import normalize_email, normalize_username
from bitrixsync.throttling import FailureThrottle


def account_for(identifier: str | None):
    """The account a sign-in identifier names (see the module docstring), or None."""
    login = normalize_username(identifier or "")
    if not login:
        return None
    manager = get_user_model()._default_manager
    email = _as_email(login)
    if email:
        match = manager.filter(email__iexact=email).order_by("id").first()
        if match is not None:
            return match
    return manager.filter(username=login).first()


def failure_budget(identifier: str | None) -> str:
    """The name failed sign-ins with ``identifier`` are counted under: its account, else the identifier."""
    account = account_for(identifier)
    if account is not None:
        return f"account:{account.pk}"
    login = normalize_username(identifier or "")
    return f"login:{(_as_email(login) or login).lower()}"


def _as_email(login: str) -> str | None:
    if "@" not in login:
        return None
    try:
        return normalize_email(login)
    except ValidationError:  # a domain IDNA refuses: no account has it
        return None


class EmailOrUsernameBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        user = account_for(username)
        if user is None:
            get_user_model()().set_password(password)  # the time a real check takes (Django's ModelBackend)
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None


class EmailOrUsernameAdminLoginForm(AdminAuthenticationForm):
    """The admin's login form, labelled for what it accepts, on the account's failure budget.

    Without the budget here, the admin login would be a password oracle outside
    it: guesses at a staff account from many addresses, on and on after
    ``/auth/token`` answers 429 (found in review).
    """

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "throttled": "Too many failed sign-ins for this account. Try again later.",
    }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].label = "Username or e-mail"

    def clean(self) -> dict:
        """Django's check, reserved on the account's budget first (as ``TokenApi``) and forgiven on success.

        An account that is not staff is refused with the same message as a wrong
        password and stays counted: forgiving it would tell a guesser that the
        password was right.
        """
        username, password = self.cleaned_data.get("username"), self.cleaned_data.get("password")
        if username is None or not password:
            return super().clean()  # no password was checked: nothing to count
        failures = FailureThrottle("login_failures", failure_budget(username))
        if failures.blocked_for() is not None:
            raise ValidationError(self.error_messages["throttled"], code="throttled")
        cleaned = super().clean()  # raises on a wrong password or an account that is not staff: stays counted
        failures.forgive()
        return cleaned
