"""Which pipeline (deal category) an order's deal lives in, and which stage ids it gets there.

* ``BITRIX_DEAL_CATEGORY_MAP`` (``service_id=category id``) picks the pipeline;
  unmapped services go to ``BITRIX_DEAL_CATEGORY_DEFAULT`` (0, the default pipeline).
* Pipeline 0 uses ``BITRIX_STAGE_MAP`` as it is. Pipeline N uses
  ``BITRIX_STAGE_MAP_<N>`` when set, else ``BITRIX_STAGE_MAP``; either way a stage
  without the ``C<N>:`` prefix gets it (``NEW`` -> ``C3:NEW``), since the portal's
  stage ids of pipeline N carry it (facts document, "Pipelines").
* Inbound events: a stage id of any mapped pipeline maps back to its order status.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from crmbridge.bitrix.portal_settings import stage_pairs


def category_for_service(service_id: str) -> int:
    return settings.BITRIX_DEAL_CATEGORY_MAP.get(service_id, settings.BITRIX_DEAL_CATEGORY_DEFAULT)


def mapped_categories() -> list[int]:
    """Every pipeline a deal may be placed in or a stage map names."""
    found = {settings.BITRIX_DEAL_CATEGORY_DEFAULT, *settings.BITRIX_DEAL_CATEGORY_MAP.values()}
    return sorted(found | set(settings.BITRIX_STAGE_MAPS))


def stage_map_setting(category: int) -> str:
    """The variable that gives pipeline ``category`` its stages (named in errors)."""
    return f"BITRIX_STAGE_MAP_{category}" if category in settings.BITRIX_STAGE_MAPS else "BITRIX_STAGE_MAP"


def stage_map(category: int) -> dict[str, str]:
    """Order status -> stage id in pipeline ``category``."""
    name = stage_map_setting(category)
    raw = settings.BITRIX_STAGE_MAPS.get(category, settings.BITRIX_STAGE_MAP)
    return {status: prefixed(category, stage) for status, stage in stage_pairs(name, raw).items()}


def prefixed(category: int, stage: str) -> str:
    if category == 0 or stage.startswith(f"C{category}:"):
        return stage
    return f"C{category}:{stage}"


def stage_for(status: str, category: int) -> str:
    """The stage for an order status in a pipeline; a status missing from the map is a configuration error."""
    stages = stage_map(category)
    if status not in stages:
        raise ImproperlyConfigured(f"{stage_map_setting(category)} has no stage for order status {status!r}")
    return stages[status]


def status_for_stage(stage_id: str) -> str | None:
    """The order status for a stage id of any mapped pipeline (the first status mapped to it), or ``None``."""
    for category in {0, *mapped_categories()}:
        for status, stage in stage_map(category).items():
            if stage == stage_id:
                return status
    return None
