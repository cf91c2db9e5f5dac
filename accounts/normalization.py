"""One spelling per mailbox and per username, before any uniqueness check.

* Unicode NFKC: fullwidth letters (U+FF4A...) and ligatures become plain ones, so look-alike
  spellings of one address cannot make a second account;
* the domain in IDNA (punycode) and lower case: ``BÜCHER.example`` ->
  ``xn--bcher-kva.example``, the form DNS and mail servers use;
* the local part keeps its case (a mailbox may be case-sensitive in theory);
  uniqueness ignores case anyway (``Lower("email")`` constraint).
"""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError


def normalize_email(email: str) -> str:
    email = unicodedata.normalize("NFKC", email or "").strip()
    local, at, domain = email.rpartition("@")
    if not at:
        return email  # not an address: the validators say so
    return f"{local}@{_idna(domain)}"


def normalize_username(username: str) -> str:
    return unicodedata.normalize("NFKC", username or "").strip()


def _idna(domain: str) -> str:
    domain = domain.lower()
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValidationError({"email": ["Enter a valid e-mail address: the domain is not a valid name."]}) from None
