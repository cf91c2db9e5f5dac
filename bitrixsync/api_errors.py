"""API error handling: every failure is a JSON answer with a 4xx code where due.

DRF already turns validation errors into 400s with per-field messages. This
handler adds the cases it leaves to Django's 500 page:

* a Django ``ValidationError`` raised by a service function (services are
  plain Python and do not know DRF, as in the HackSoft styleguide): 400 with
  the same per-field shape a serializer produces;
* a value the database refuses (e.g. an integer too large for the column): 400.

It also holds the two input rules every endpoint shares: ``SafeJSONParser``
(a body nested too deeply is a 400, where DRF's parser lets ``RecursionError``
through as a 500) and ``StrictInputMixin`` (an unknown field is an error, not
silently dropped).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError
from rest_framework import parsers, serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = serializers.ValidationError(serializers.as_serializer_error(exc))
    response = drf_exception_handler(exc, context)
    if response is not None:
        return response
    if isinstance(exc, (DataError, OverflowError)):
        logger.info("Refused a value out of range: %s", exc.__class__.__name__)
        return Response({"detail": "A value is out of range for its field."}, status=status.HTTP_400_BAD_REQUEST)
    return None


class SafeJSONParser(parsers.JSONParser):
    """DRF's JSON parser, plus a 400 for JSON nested deeper than Python's recursion limit."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None


class StrictInputMixin:
    """Reject fields the serializer does not know, except the ones listed in ``ignored_fields``.

    ``PUT`` here is partial (see the views), so a misspelt field name
    (``{"quantiy": 5}``) would otherwise answer 200 and change nothing. Fields
    of the *output* representation (``id``, ``bitrix_deal_id``...) go in
    ``ignored_fields``: a client may send back what it read, and those are
    dropped, never written.
    """

    ignored_fields: Iterable[str] = ()

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            known = set(self.fields) | set(self.ignored_fields)  # type: ignore[attr-defined]
            unknown = sorted(_printable(name) for name in data if name not in known)
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown[:20]})
        return super().to_internal_value(data)  # type: ignore[misc]


def _printable(name: object) -> str:
    """A field name fit to echo: short, and without lone surrogates (they cannot be encoded as UTF-8)."""
    return str(name)[:100].encode("utf-8", "backslashreplace").decode("utf-8")
