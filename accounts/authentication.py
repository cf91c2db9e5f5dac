"""``Authorization: Bearer <token>``, as the specification's curl examples send it.

Tokens are django-rest-knox's: only a SHA-512 digest is stored, each has an
expiry (``API_TOKEN_TTL_HOURS``), a user may hold several (one per sign-in),
and they are deleted by ``POST /auth/logout`` (this one), ``/auth/logout-all``
(every one) and a password change (``accounts.models.User.save``).
"""

from knox.auth import TokenAuthentication
from rest_framework import exceptions


class BearerTokenAuthentication(TokenAuthentication):
    """knox's authentication (``AUTH_HEADER_PREFIX = "Bearer"`` in ``REST_KNOX``), 401 for any malformed token."""

    def authenticate_credentials(self, token: bytes):
        # The header arrives as latin-1 bytes; knox decodes them as UTF-8 and would answer 500 on a stray byte.
        try:
            token.decode("utf-8")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        return super().authenticate_credentials(token)
