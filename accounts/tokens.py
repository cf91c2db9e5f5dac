"""API tokens (django-rest-knox): issue and revoke. Only digests are stored; the token is shown once."""

from __future__ import annotations

from datetime import datetime

from knox.models import AuthToken


def issue_token(user) -> tuple[str, datetime | None]:
    """A new token for ``user`` and its expiry (``None``: never, with ``API_TOKEN_TTL_HOURS=0``)."""
    instance, token = AuthToken.objects.create(user=user)
    return token, instance.expiry


def token_for(user) -> str:
    """A new token for ``user`` (each call issues one; the old ones stay valid until they expire)."""
    return issue_token(user)[0]


def revoke_all(user) -> int:
    """Delete every token of ``user``; the number deleted."""
    deleted, _ = AuthToken.objects.filter(user=user).delete()
    return deleted
