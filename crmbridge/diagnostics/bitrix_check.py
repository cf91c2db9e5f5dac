"""One cheap call (``profile``) that tells whether the portal answers and accepts the webhook."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.errors import BitrixError
from crmbridge.bitrix.webhook_url import redact
from crmbridge.diagnostics.config_facts import webhook_problem


@dataclass(frozen=True)
class ConnectionCheck:
    """``kind``: ``None`` when ok; else ``not_configured``, ``config`` (401/403: wrong or expired
    webhook, no rights), ``retry`` (network, 5xx, rate limit) or ``permanent``."""

    ok: bool
    summary: str
    kind: str | None = None
    code: str = ""
    http_status: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def check_bitrix_connection() -> ConnectionCheck:
    problem = webhook_problem()
    if problem:
        return ConnectionCheck(ok=False, summary=problem, kind="not_configured")
    client = BitrixClient.from_settings()
    try:
        profile = client.call("profile", {})
    except BitrixError as exc:
        return ConnectionCheck(
            ok=False, summary=redact(str(exc)), kind=exc.kind.value, code=exc.code, http_status=exc.http_status
        )
    except Exception as exc:  # a transport error the client did not wrap: still an answer, not a crash
        return ConnectionCheck(ok=False, summary=redact(f"{type(exc).__name__}: {exc}"), kind="retry")
    finally:
        client.close()
    return ConnectionCheck(ok=True, summary=_profile_summary(profile))


def _profile_summary(profile) -> str:
    if isinstance(profile, dict):
        name = " ".join(str(profile.get(k) or "") for k in ("NAME", "LAST_NAME")).strip()
        admin = " (portal admin)" if profile.get("ADMIN") else ""
        if name or profile.get("ID"):
            return f"connected as {name or 'user'} #{profile.get('ID', '?')}{admin}"
    return "connected"
