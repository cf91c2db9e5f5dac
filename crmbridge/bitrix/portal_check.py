"""Does the portal have what the mapping settings name? One ``batch`` request finds out.

``bitrix_doctor`` and the worker (before its first chunk) ask: every mapped
pipeline exists (``crm.category.list``), every mapped stage exists in its pipeline
(``crm.status.list``, ``ENTITY_ID`` ``DEAL_STAGE`` / ``DEAL_STAGE_<N>``), every
mapped custom field exists with a type that can hold the value
(``crm.<entity>.userfield.list``). Each problem is one line naming the setting and
the fix. A missing pipeline or stage (``Problem.pauses``) would fail every deal of
it, so the worker pauses on it as on an expired webhook; a missing custom field
only leaves that field unset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from crmbridge import entities
from crmbridge.bitrix import custom_fields, pipelines
from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.errors import BitrixError, ErrorKind

ENUMERATION_SAMPLE = 200  # distinct local values checked against a list field's items


@dataclass(frozen=True)
class Problem:
    setting: str
    text: str  # one line: what is wrong and how to fix it
    pauses: bool = False
    warning: bool = False


@dataclass
class PortalReport:
    problems: list[Problem] = field(default_factory=list)
    categories: dict[int, str] = field(default_factory=dict)

    @property
    def pausing(self) -> list[Problem]:
        return [p for p in self.problems if p.pauses]


def check_portal(client: BitrixClient, *, catalog=None, local_values: bool = False) -> PortalReport:
    """Raises ``BitrixError`` when the batch itself fails (the caller decides what that means).

    ``catalog``: a ``UserFieldCatalog`` to prime with the lists read here.
    ``local_values``: also check that list fields have an item for every local value (the doctor).
    """
    categories = pipelines.mapped_categories()
    commands: dict[str, tuple[str, dict]] = {"categories": ("crm.category.list", {"entityTypeId": 2})}
    for category in categories:
        entity_id = "DEAL_STAGE" if category == 0 else f"DEAL_STAGE_{category}"
        commands[f"stages{category}"] = ("crm.status.list", {"filter": {"ENTITY_ID": entity_id}})
    for entity in custom_fields.SETTINGS:
        if custom_fields.field_map(entity):
            commands[f"fields_{entity}"] = (custom_fields.list_method(entity), {})
    result = client.batch(commands)
    if result.errors:
        raise next(iter(result.errors.values()))
    report = PortalReport(categories=_categories(result.results.get("categories")))
    for category in categories:
        report.problems += _pipeline_problems(category, report.categories, result.results.get(f"stages{category}"))
    for entity in custom_fields.SETTINGS:
        key = f"fields_{entity}"
        if key in result.results:
            listing = result.results[key]
            if key in result.next and isinstance(listing, list):  # more than one page of fields
                listing = listing + client.list_all(custom_fields.list_method(entity), start=result.next[key])
            if catalog is not None:
                catalog.prime(entity, listing)
            report.problems += _field_problems(entity, listing, local_values=local_values)
    return report


def pause_error(report: PortalReport) -> BitrixError | None:
    """The configuration error the worker pauses with, or ``None``."""
    lines = [p.text for p in report.pausing]
    if not lines:
        return None
    return BitrixError("PORTAL_MAPPING", "; ".join(lines), kind=ErrorKind.CONFIG)


# -- pipelines and stages --------------------------------------------------------------
def _categories(answer: Any) -> dict[int, str]:
    items = answer.get("categories") if isinstance(answer, dict) else None
    return {int(c["id"]): str(c.get("name", "")) for c in items or [] if isinstance(c, dict) and "id" in c}


def _category_setting(category: int) -> str:
    services = sorted(s for s, c in settings.BITRIX_DEAL_CATEGORY_MAP.items() if c == category)
    if services:
        return f"BITRIX_DEAL_CATEGORY_MAP ({', '.join(services)}={category})"
    if category == settings.BITRIX_DEAL_CATEGORY_DEFAULT:
        return "BITRIX_DEAL_CATEGORY_DEFAULT"
    return f"BITRIX_STAGE_MAP_{category}"


def _pipeline_problems(category: int, existing: dict[int, str], stages_answer: Any) -> list[Problem]:
    if category not in existing:
        setting = _category_setting(category)
        have = ", ".join(f"{i} {name}" for i, name in sorted(existing.items())) or "none"
        text = (
            f"{setting}: pipeline {category} does not exist in the portal (it has: {have}); "
            "create it (CRM > Deals > pipelines) or map to an existing id"
        )
        # Only a pipeline deals go to stops the sync; a stage map for an unused one does not.
        used = (
            category == settings.BITRIX_DEAL_CATEGORY_DEFAULT or category in settings.BITRIX_DEAL_CATEGORY_MAP.values()
        )
        return [Problem(setting.split(" ")[0], text, pauses=used)]
    stage_ids = [str(s.get("STATUS_ID")) for s in stages_answer or [] if isinstance(s, dict)]
    setting = pipelines.stage_map_setting(category)
    stages = pipelines.stage_map(category)
    problems = []
    for status in entities.DEAL.model().Status.values:
        if status not in stages:
            text = f"{setting}: no stage for order status {status!r} in pipeline {category}; add {status}=<STAGE>"
            problems.append(Problem(setting, text, pauses=True))
    for status, stage in stages.items():
        if stage not in stage_ids:
            text = (
                f"{setting}: order status {status!r} maps to {stage}, which pipeline {category} "
                f"({existing[category]}) does not have; use one of {', '.join(stage_ids) or '(no stages)'}"
            )
            problems.append(Problem(setting, text, pauses=True))
    return problems


# -- custom fields -----------------------------------------------------------------------
def _field_problems(entity: str, listing: Any, *, local_values: bool) -> list[Problem]:
    setting = custom_fields.SETTINGS[entity]
    model = entities.get(entity).model()
    portal = {str(f.get("FIELD_NAME")): f for f in listing or [] if isinstance(f, dict)}
    problems = []
    for attribute, name in custom_fields.field_map(entity).items():
        kind = custom_fields.value_kind(model, attribute)
        description = portal.get(name)
        if kind is None:
            text = f"{setting}: {attribute!r} is not a field of the local {entity}; use a model field or service"
            problems.append(Problem(setting, text))
        elif description is None:
            text = (
                f"{setting}: {name} does not exist on the portal's {entity}s; create it "
                f"(CRM settings > custom fields) or remove {attribute}={name}"
            )
            problems.append(Problem(setting, text))
        elif description.get("USER_TYPE_ID") not in custom_fields.COMPATIBLE[kind]:
            allowed = ", ".join(sorted(custom_fields.COMPATIBLE[kind]))
            text = (
                f"{setting}: {name} is of type {description.get('USER_TYPE_ID')}, which cannot hold {attribute} "
                f"({kind}); map it to a field of type {allowed}"
            )
            problems.append(Problem(setting, text))
        elif local_values and description.get("USER_TYPE_ID") == "enumeration":
            problems += _missing_items(setting, model, attribute, description)
    return problems


def _missing_items(setting: str, model, attribute: str, description: dict) -> list[Problem]:
    missing = [
        display
        for value, display in known_values(model, attribute)
        if custom_fields.enumeration_item(description, value, display) is None
    ]
    if not missing:
        return []
    name = description.get("FIELD_NAME")
    shown = ", ".join(repr(m) for m in missing[:10]) + (" ..." if len(missing) > 10 else "")
    text = f"{setting}: list field {name} has no item for {attribute} {shown}; add the items (else it stays unset)"
    return [Problem(setting, text, warning=True)]


def known_values(model, attribute: str) -> list[tuple[Any, str]]:
    """``(value, display)`` pairs an attribute takes: every choice, or the distinct values in the database."""
    from orders.catalogue import SERVICES

    if attribute == "service":
        return list(SERVICES.items())
    field = model._meta.get_field(attribute)
    if field.choices:
        return [(value, str(label)) for value, label in field.choices]
    values = model.objects.filter(**{f"{attribute}__isnull": False}).values_list(attribute, flat=True).distinct()
    return [(value, str(value)) for value in values[:ENUMERATION_SAMPLE] if value != ""]
