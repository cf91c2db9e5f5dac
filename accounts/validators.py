"""Validation rules of user fields shared by the model, the API and the admin."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible

PHONE_MAX_LENGTH = 32
_PHONE_CHARS = re.compile(r"\+?[0-9 ()\-]+\Z")
# E.164 allows at most 15 digits; fewer than 5 is no reachable number.
_MIN_DIGITS, _MAX_DIGITS = 5, 15


@deconstructible
class PhoneValidator:
    """Digits with optional ``+`` in front, spaces, dashes and parentheses: ``+7 (495) 123-45-67``."""

    message = "Enter a phone number: digits, an optional leading +, spaces, dashes and parentheses."

    def __call__(self, value: str) -> None:
        if not value:
            return
        if not _PHONE_CHARS.match(value):
            raise ValidationError(self.message, code="invalid_phone")
        digits = sum(ch.isdigit() for ch in value)
        if not _MIN_DIGITS <= digits <= _MAX_DIGITS:
            raise ValidationError(
                f"A phone number has {_MIN_DIGITS} to {_MAX_DIGITS} digits; this one has {digits}.",
                code="invalid_phone",
            )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PhoneValidator)

    def __hash__(self) -> int:
        return hash(PhoneValidator)
