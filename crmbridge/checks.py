"""Bitrix settings as Django system checks (``manage.py check``, and before most commands).

Warnings, not errors: a wrong webhook or stage map must not stop the web app or
the worker from starting (the worker pauses and says why; ``bitrix_doctor``
explains the fix). Settings that cannot even be parsed from the environment
fail earlier, when ``bitrixsync/settings.py`` loads.

* ``crmbridge.W001``: ``BITRIX_WEBHOOK_URL`` is set but is not a webhook URL
  (the message never quotes it: it contains the webhook code);
* ``crmbridge.W002``: ``BITRIX_STAGE_MAP`` does not parse or has no stage for an order status.
"""

from __future__ import annotations

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from crmbridge.bitrix import mapping
from crmbridge.diagnostics.config_facts import webhook_problem
from orders.models import Order


@checks.register(checks.Tags.compatibility)
def check_webhook_url(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    if not settings.BITRIX_WEBHOOK_URL:
        return []  # development: ./run.sh starts the sandbox; the worker pauses until it is set
    problem = webhook_problem()
    if problem is None:
        return []
    hint = "Copy the inbound webhook URL from the portal: https://<portal>/rest/<user>/<code>/"
    return [checks.Warning(problem, hint=hint, id="crmbridge.W001")]


@checks.register(checks.Tags.compatibility)
def check_stage_map(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    try:
        for status in Order.Status.values:
            mapping.stage_for_status(status)
    except ImproperlyConfigured as exc:
        hint = "BITRIX_STAGE_MAP is status=STAGE pairs separated by commas, one for every order status."
        return [checks.Warning(str(exc), hint=hint, id="crmbridge.W002")]
    return []
