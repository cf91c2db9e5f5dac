"""OpenAPI: show ``BearerTokenAuthentication`` as an HTTP bearer security scheme.

Imported from ``AccountsConfig.ready()``; drf-spectacular finds extensions by subclassing.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "`Authorization: Bearer <token>`; get a token from POST /auth/token.",
        }
