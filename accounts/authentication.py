"""``Authorization: Bearer <token>``, as the specification's curl examples send it."""

from rest_framework.authentication import TokenAuthentication


class BearerTokenAuthentication(TokenAuthentication):
    keyword = "Bearer"
