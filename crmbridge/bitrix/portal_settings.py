"""Parsers for the settings that map this shop onto a portal's pipelines, catalogue and custom fields.

Each reads ``name=value,...`` pairs and raises ``ImproperlyConfigured`` naming the
variable (``bitrixsync/settings.py`` calls them at start-up: a bad value is a
one-line configuration error). No Django settings are read here.

* ``BITRIX_DEAL_CATEGORY_MAP``: ``service_id=category id`` (``cnc-milling=3``)
* ``BITRIX_PRODUCT_MAP``: ``service_id=PRODUCT_ID`` (the portal's catalogue)
* ``BITRIX_DEAL_FIELDS`` / ``BITRIX_CONTACT_FIELDS``: ``attribute=UF_CRM_NAME``
* ``BITRIX_STAGE_MAP_<N>``: ``status=STAGE`` for pipeline N (``stage_maps_from_environment``)
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured

STAGE_MAP_VARIABLE = re.compile(r"^BITRIX_STAGE_MAP_(\d+)$")
_ATTRIBUTE = re.compile(r"^[a-z_][a-z0-9_]*$")
_USERFIELD = re.compile(r"^UF_CRM_[A-Z0-9_]+$")


def pairs(name: str, raw: str, *, form: str = "key=value") -> list[tuple[str, str]]:
    """``"a=1, b=2"`` -> ``[("a", "1"), ("b", "2")]``; an empty value is no pairs."""
    found = []
    for pair in raw.split(","):
        if not pair.strip():
            continue
        key, sep, value = (part.strip() for part in pair.partition("="))
        if not sep or not key or not value:
            raise ImproperlyConfigured(f"{name} must be {form} pairs separated by commas, got {pair.strip()!r}")
        found.append((key, value))
    return found


def id_map(name: str, raw: str, *, minimum: int) -> dict[str, int]:
    """``service_id=<whole number>`` pairs (categories: 0 and up; products: 1 and up)."""
    ids = {}
    for key, value in pairs(name, raw):
        if not value.isdigit() or int(value) < minimum:
            raise ImproperlyConfigured(
                f"{name} must be service_id=<whole number >= {minimum}> pairs, got {key}={value}"
            )
        ids[key] = int(value)
    return ids


def field_map(name: str, raw: str) -> dict[str, str]:
    """``attribute=UF_CRM_NAME`` pairs; whether the attribute exists is checked by the doctor."""
    fields = {}
    for attribute, field in pairs(name, raw):
        if not _ATTRIBUTE.match(attribute):
            raise ImproperlyConfigured(
                f"{name} must be attribute=UF_CRM_NAME pairs (e.g. material=UF_CRM_MATERIAL), got {attribute!r}"
            )
        if not _USERFIELD.match(field):
            raise ImproperlyConfigured(
                f"{name} must be attribute=UF_CRM_NAME pairs (e.g. material=UF_CRM_MATERIAL), got {field!r}"
            )
        fields[attribute] = field
    return fields


def stage_pairs(name: str, raw: str) -> dict[str, str]:
    """``status=STAGE`` pairs of a stage map."""
    try:
        return dict(pairs(name, raw))
    except ImproperlyConfigured:
        raise ImproperlyConfigured(f"{name} must be status=STAGE pairs separated by commas") from None


def stage_maps_from_environment(environment: Mapping[str, str]) -> dict[int, str]:
    """Every ``BITRIX_STAGE_MAP_<N>`` set: pipeline N -> its raw map (checked here)."""
    maps = {}
    for name, raw in environment.items():
        match = STAGE_MAP_VARIABLE.match(name)
        if match and raw.strip():
            stage_pairs(name, raw)
            maps[int(match[1])] = raw.strip()
    return dict(sorted(maps.items()))
