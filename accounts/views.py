"""Account endpoints: register, obtain a token, sign out, read and change one's profile.

Rate limits (``bitrixsync.throttling``): registrations and sign-ins per client
address, and failed sign-ins per account from any address (a 429 then even for
the right password, so guessing cannot go on from many addresses). The account
is the one the identifier resolves to (``accounts.backends``): its e-mail and its
username share one budget.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import Throttled
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services
from accounts.backends import failure_budget
from accounts.serializers import (
    ProfileInputSerializer,
    RegisterInputSerializer,
    RegisterOutputSerializer,
    TokenInputSerializer,
    TokenOutputSerializer,
    UserOutputSerializer,
)
from accounts.tokens import issue_token, revoke_all
from bitrixsync.throttling import FailureThrottle, LoginRateThrottle, RegisterRateThrottle


class RegisterApi(APIView):
    # No authentication at all: a stale or bad token must not turn sign-up into a 401.
    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = (RegisterRateThrottle,)

    @extend_schema(
        request=RegisterInputSerializer,
        responses={201: RegisterOutputSerializer},
        summary="Create an account and get its API token",
    )
    def post(self, request: Request) -> Response:
        serializer = RegisterInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.register_user(**serializer.validated_data)
        token, expiry = issue_token(user)
        data = {**UserOutputSerializer(user).data, "token": token, "expiry": expiry}
        return Response(data, status=status.HTTP_201_CREATED)


class TokenApi(APIView):
    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = (LoginRateThrottle,)

    @extend_schema(
        request=TokenInputSerializer,
        responses={200: TokenOutputSerializer},
        summary="Exchange an e-mail (or username) and password for an API token",
    )
    def post(self, request: Request) -> Response:
        serializer = TokenInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        login = serializer.validated_data.get("email") or serializer.validated_data.get("username", "")
        failures = FailureThrottle("login_failures", failure_budget(login))  # per account, however named
        wait = failures.blocked_for()
        if wait is not None:
            raise Throttled(wait, detail="Too many failed sign-ins for this account. Try again later.")
        try:
            token, expiry = services.obtain_token(request=request, **serializer.validated_data)
        except services.InvalidCredentials:
            failures.record()  # counted already by blocked_for(), which reserved this attempt
            raise
        failures.forgive()  # a successful sign-in is not a failure
        return Response(TokenOutputSerializer({"token": token, "expiry": expiry}).data)


class LogoutApi(APIView):
    """Revoke the token of this request (other sessions and devices stay signed in)."""

    @extend_schema(request=None, responses={204: None}, summary="Sign out: revoke this token")
    def post(self, request: Request) -> Response:
        if request.auth is not None and hasattr(request.auth, "delete"):
            request.auth.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutAllApi(APIView):
    """Revoke every token of the signed-in user (every device), e.g. after a lost laptop."""

    @extend_schema(request=None, responses={204: None}, summary="Sign out everywhere: revoke all your tokens")
    def post(self, request: Request) -> Response:
        revoke_all(request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProfileApi(APIView):
    """The signed-in user.

    ``PUT`` is partial, like ``PATCH``: the specification's example
    ``curl -X PUT /profile -d '{"email": "newemail@example.com"}'`` must change
    the e-mail and leave the names and phone as they are. Fields of the answer
    that a user may not change (``is_staff``, ``bitrix_contact_id``...) are
    ignored when sent back; unknown fields are a 400.
    """

    @extend_schema(responses=UserOutputSerializer, summary="The signed-in user")
    def get(self, request: Request) -> Response:
        return Response(UserOutputSerializer(request.user).data)

    @extend_schema(
        request=ProfileInputSerializer,
        responses=UserOutputSerializer,
        summary="Change the signed-in user (partial: send only what changes)",
    )
    def put(self, request: Request) -> Response:
        return self._update(request)

    @extend_schema(
        request=ProfileInputSerializer,
        responses=UserOutputSerializer,
        summary="Change the signed-in user",
    )
    def patch(self, request: Request) -> Response:
        return self._update(request)

    def _update(self, request: Request) -> Response:
        serializer = ProfileInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        user = services.update_profile(user=request.user, changes=serializer.validated_data)
        return Response(UserOutputSerializer(user).data)
