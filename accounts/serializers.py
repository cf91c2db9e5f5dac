"""Input and output shapes of the account endpoints (no business logic here)."""

from __future__ import annotations

from django.contrib.auth.validators import UnicodeUsernameValidator
from rest_framework import serializers

from accounts.models import User
from accounts.validators import PHONE_MAX_LENGTH, PhoneValidator
from bitrixsync.api_errors import StrictInputMixin

_NAME_MAX = User._meta.get_field("first_name").max_length
_EMAIL_MAX = User._meta.get_field("email").max_length
# Django's password hashers accept any length; a cap keeps hashing cheap.
PASSWORD_MAX_LENGTH = 128


def _email_field(**kwargs) -> serializers.EmailField:
    # Uniqueness (case-insensitive) is checked by the service, with the other rules.
    return serializers.EmailField(max_length=_EMAIL_MAX, **kwargs)


def _phone_field() -> serializers.CharField:
    return serializers.CharField(
        max_length=PHONE_MAX_LENGTH, allow_blank=True, required=False, validators=[PhoneValidator()]
    )


class UserOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = (
            "id",
            "username",
            "email",
            "first_name",
            "last_name",
            "phone",
            "bitrix_contact_id",
            "is_staff",
            "date_joined",
        )
        read_only_fields = fields


class RegisterInputSerializer(StrictInputMixin, serializers.Serializer):
    email = _email_field()
    password = serializers.CharField(max_length=PASSWORD_MAX_LENGTH, trim_whitespace=False, write_only=True)
    username = serializers.CharField(
        max_length=150,
        required=False,
        allow_blank=True,
        validators=[UnicodeUsernameValidator()],
        help_text="Optional: derived from the e-mail address when left out.",
    )
    first_name = serializers.CharField(max_length=_NAME_MAX, required=False, allow_blank=True)
    last_name = serializers.CharField(max_length=_NAME_MAX, required=False, allow_blank=True)
    phone = _phone_field()


class RegisterOutputSerializer(UserOutputSerializer):
    token = serializers.CharField(read_only=True, help_text="Send as `Authorization: Bearer <token>`.")
    expiry = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="When the token expires (null: never)."
    )

    class Meta(UserOutputSerializer.Meta):
        fields = (*UserOutputSerializer.Meta.fields, "token", "expiry")
        read_only_fields = fields


class TokenInputSerializer(StrictInputMixin, serializers.Serializer):
    email = serializers.CharField(max_length=_EMAIL_MAX, required=False, help_text="E-mail address, or:")
    username = serializers.CharField(max_length=150, required=False, help_text="the username.")
    password = serializers.CharField(max_length=PASSWORD_MAX_LENGTH, trim_whitespace=False, write_only=True)

    def validate(self, attrs: dict) -> dict:
        if not attrs.get("email") and not attrs.get("username"):
            raise serializers.ValidationError({"email": ["Give an e-mail address or a username."]})
        return attrs


class TokenOutputSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send as `Authorization: Bearer <token>`.")
    expiry = serializers.DateTimeField(allow_null=True, help_text="When the token expires (null: never).")


class ProfileInputSerializer(StrictInputMixin, serializers.Serializer):
    """The fields a user may change about themselves. Read-only ones are dropped, not written."""

    ignored_fields = UserOutputSerializer.Meta.fields

    email = _email_field(required=False)
    first_name = serializers.CharField(max_length=_NAME_MAX, required=False, allow_blank=True)
    last_name = serializers.CharField(max_length=_NAME_MAX, required=False, allow_blank=True)
    phone = _phone_field()
