"""API tokens (DRF's authtoken table, one token per user)."""

from rest_framework.authtoken.models import Token


def token_for(user) -> str:
    token, _ = Token.objects.get_or_create(user=user)
    return token.key
