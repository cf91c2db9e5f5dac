"""Writes on users: registration, sign-in (token issue) and profile updates.

Services are plain functions with keyword-only arguments. They raise Django's
``ValidationError`` keyed by field; ``bitrixsync.api_errors`` turns it into a
400. Saves run in a transaction so that whatever the Bitrix bridge records on
``post_save`` (its outbox) commits or rolls back with the user.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest

from accounts.models import User
from accounts.normalization import normalize_email, normalize_username
from accounts.tokens import issue_token

PROFILE_FIELDS = frozenset({"email", "first_name", "last_name", "phone"})
_USERNAME_UNSAFE = re.compile(r"[^\w.@+-]")
_USERNAME_MAX = 150


class InvalidCredentials(ValidationError):
    """Wrong login or password (one message for both: do not reveal which)."""


def register_user(
    *,
    email: str,
    password: str,
    username: str = "",
    first_name: str = "",
    last_name: str = "",
    phone: str = "",
) -> User:
    email = normalize_email(email)
    user = User(
        username=normalize_username(username) or derive_username(email),
        email=email,
        first_name=first_name,
        last_name=last_name,
        phone=phone,
    )
    _raise_collected(
        # Username before e-mail: when a racing registration of the same mailbox commits between
        # the two reads, the later e-mail read sees it too, so the answer names the e-mail.
        lambda: _check_username_free(user.username),
        lambda: _check_email_free(user.email),
        lambda: _check_password(password, user),
        # Uniqueness is checked above, case-insensitively (and settled by the database): not again here.
        lambda: user.full_clean(exclude=["password"], validate_unique=False, validate_constraints=False),
    )
    user.set_password(password)
    return _save(user)


def obtain_token(
    *, password: str, email: str = "", username: str = "", request: HttpRequest | None = None
) -> tuple[str, datetime | None]:
    """A new API token and its expiry, after checking the password with Django's auth backends.

    Either field may carry an e-mail or a username: ``accounts.backends.account_for`` decides the
    account (an e-mail wins), as the admin login does.
    """
    # authenticate() hashes the password even for an unknown login, so the
    # answer takes as long whether the account exists or not.
    user = authenticate(request, username=email or username, password=password)
    if user is None:
        raise InvalidCredentials("Unable to sign in with these credentials.", code="authorization")
    return issue_token(user)


def update_profile(*, user: User, changes: Mapping[str, Any]) -> User:
    """Apply ``changes`` (a subset of ``PROFILE_FIELDS``); a no-op saves nothing and syncs nothing."""
    unexpected = set(changes) - PROFILE_FIELDS
    if unexpected:
        raise TypeError(f"update_profile() cannot change {sorted(unexpected)}")
    changes = dict(changes)
    if "email" in changes:
        changes["email"] = normalize_email(changes["email"])
    changed = [name for name, value in changes.items() if getattr(user, name) != value]
    if not changed:
        return user
    if "email" in changed and user.username.lower() == user.email.lower():
        # A username with "@" is the account's own e-mail (User.clean): it moves with the address.
        changes["username"] = changes["email"]
        changed.append("username")
    for name in changed:
        setattr(user, name, changes[name])
    _raise_collected(
        lambda: _check_email_free(user.email, exclude_pk=user.pk) if "email" in changed else None,
        lambda: _check_username_free(user.username, exclude_pk=user.pk) if "username" in changed else None,
        lambda: user.full_clean(
            exclude=[f.name for f in User._meta.fields if f.name not in changed],
            validate_unique=False,
            validate_constraints=False,
        ),
    )
    return _save(user, update_fields=changed)


def derive_username(email: str) -> str:
    """A free username from the e-mail's local part: ``jane.doe@x.org`` -> ``jane.doe`` (or ``jane.doe-2``)."""
    base = _USERNAME_UNSAFE.sub("", email.rsplit("@", 1)[0])[: _USERNAME_MAX - 8] or "user"
    candidate = base
    for n in range(2, 20):
        if not User.objects.filter(username__iexact=candidate).exists():
            return candidate
        candidate = f"{base}-{n}"
    return f"{base}-{secrets.token_hex(3)}"


def _raise_collected(*checks: Callable[[], object]) -> None:
    """Run every check and raise one ``ValidationError`` with all their field errors."""
    errors: dict = {}
    for check in checks:
        try:
            check()
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)
    if errors:
        raise ValidationError(errors)


def _check_email_free(email: str, *, exclude_pk: int | None = None) -> None:
    # The column is unique as written; addresses differing only in case are one inbox.
    if User.objects.filter(email__iexact=email).exclude(pk=exclude_pk).exists():
        raise ValidationError(
            {"email": ValidationError("A user with this e-mail address already exists.", code="unique")}
        )


def _check_username_free(username: str, *, exclude_pk: int | None = None) -> None:
    if User.objects.filter(username__iexact=username).exclude(pk=exclude_pk).exists():
        raise ValidationError({"username": ValidationError("This username is taken.", code="unique")})


def _check_password(password: str, user: User) -> None:
    try:
        validate_password(password, user=user)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from None


def _save(user: User, *, update_fields: list[str] | None = None) -> User:
    try:
        with transaction.atomic():
            user.save(update_fields=update_fields)
    except IntegrityError:
        # Two requests raced past the checks; the database's unique constraints decided. Say which.
        raise _taken_error(user) from None
    return user


def _taken_error(user: User) -> ValidationError:
    others = User.objects.exclude(pk=user.pk) if user.pk else User.objects.all()
    if others.filter(email__iexact=user.email).exists():
        return ValidationError({"email": ["A user with this e-mail address already exists."]})
    if others.filter(username=user.username).exists():
        return ValidationError({"username": ["This username is taken."]})
    return ValidationError({"email": ["A user with this e-mail address or username already exists."]})
