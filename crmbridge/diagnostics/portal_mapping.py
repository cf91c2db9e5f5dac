"""``bitrix_doctor``'s check of the mapping settings against the portal (``crmbridge.bitrix.portal_check``).

One finding ``bitrix.mapping`` when all is well (or the check cannot run); otherwise
one finding per problem, its summary the one line naming the setting and the fix.
A missing pipeline or stage, field or field type is a FAIL (the worker pauses on
the first two); a list value without an item is a WARN (that field stays unset).
"""

from __future__ import annotations

from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.errors import BitrixError
from crmbridge.bitrix.portal_check import check_portal
from crmbridge.bitrix.webhook_url import redact
from crmbridge.diagnostics.config_facts import webhook_problem

CHECK = "bitrix.mapping"


OK, WARN, FAIL, SKIP = "OK", "WARN", "FAIL", "SKIP"  # the doctor's statuses


def check_portal_mapping(*, enabled: bool = True) -> list[dict]:
    """The findings as ``Finding`` keyword arguments (the doctor builds them)."""
    if not enabled:
        return [_finding(SKIP, "skipped (--skip-bitrix)")]
    if webhook_problem() is not None:
        return [_finding(SKIP, "skipped: no usable webhook URL")]
    client = BitrixClient.from_settings()
    try:
        report = check_portal(client, local_values=True)
    except BitrixError as exc:
        return [_finding(SKIP, f"skipped: the portal did not answer the check: {redact(str(exc))[:200]}")]
    finally:
        client.close()
    if not report.problems:
        pipelines = ", ".join(f"{i} {name}" for i, name in sorted(report.categories.items()))
        return [_finding(OK, f"pipelines, stages and custom fields found in the portal (pipelines: {pipelines})")]
    return [
        _finding(
            WARN if problem.warning else FAIL,
            problem.text,
            cause="the worker pauses until this is fixed" if problem.pauses else "",
            details={"setting": problem.setting},
        )
        for problem in report.problems
    ]


def _finding(status: str, summary: str, **extra) -> dict:
    return {"check": CHECK, "status": status, "summary": summary, **extra}
