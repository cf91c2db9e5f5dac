"""E-mail and phone values as the portal's duplicate search compares them.

``crm.duplicate.findbycomm`` finds an e-mail in any letter case and a phone
whatever its formatting, and ignores a phone's extension (``+7812...#4048``
finds ``+7812...``). The sandbox answers with these rules and the worker uses
the same ones to tell which of the contacts a grouped lookup found belongs to
which user.
"""

from __future__ import annotations

import re

# What starts an extension: "#", "ext", "ext.", "x", "доб" (Russian "additional"), "," or ";".
_EXTENSION = re.compile(r"(#|\bext\.?|\bx|доб\.?|[,;]).*$", re.IGNORECASE)
_NOT_DIGIT = re.compile(r"\D")


def normal_email(value: str | None) -> str:
    """``" Alice@X.com "`` -> ``"alice@x.com"``; empty for nothing."""
    return (value or "").strip().lower()


def normal_phone(value: str | None) -> str:
    """``"+7 (812) 555-01-02 #4048"`` -> ``"78125550102"``: digits only, the extension dropped."""
    return _NOT_DIGIT.sub("", _EXTENSION.sub("", value or ""))


def normal(kind: str, value: str | None) -> str:
    """``kind`` is ``EMAIL`` or ``PHONE`` (the ``type`` of ``findbycomm``)."""
    return normal_email(value) if kind == "EMAIL" else normal_phone(value)
