"""``POST /bitrix/webhook``: the portal's outbound events, verified and queued at once.

The portal calls us through a queue, does not retry, and calls slow handlers
less often, so this view does no Bitrix or database work: it checks the token,
adds a small message to ``{prefix}webhooks`` and answers. The worker does the
rest (``crmbridge.inbound.processor``).

Answers (JSON, ``{"error": code, "detail": sentence}`` on failure):

====  ==================================================================
200   queued (``{"status": "queued"}``), or an event we do not handle
      (``{"status": "ignored"}``, logged at DEBUG, nothing queued); contact
      events count as not handled while ``BITRIX_INBOUND_CONTACT_UPDATES`` is off
400   unparsable, or an event without a usable ID or ts
401   no ``auth[application_token]``
403   a wrong ``auth[application_token]``
413   body too large (64 KB here; ``API_MAX_BODY_BYTES`` for the whole API)
415   not form-encoded (the portal always sends form data), or a charset other than UTF-8
429   too many refused tokens from this address (``THROTTLE_WEBHOOK_REFUSED_RATE``), ``Retry-After`` set
503   ``BITRIX_INBOUND_TOKEN`` is empty (inbound events are disabled), or
      Redis is down: the event is lost, see ``bitrix_pull_deals``
====  ==================================================================

An empty token setting answers 503, not 403: the fault is our configuration,
not the caller's credentials, and the message says which setting to fill in.
"""

from __future__ import annotations

import hmac
import logging

import redis
from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from bitrixsync.client_address import client_address
from bitrixsync.throttling import FailureThrottle, retry_after
from crmbridge.inbound.events import (
    HANDLED_EVENTS,
    MAX_DOMAIN_LENGTH,
    InboundEvent,
    InvalidEvent,
    parse_bitrix_id,
    parse_portal_time,
)
from crmbridge.publishing.publisher import publish_client
from crmbridge.redis_io import streams

logger = logging.getLogger("crmbridge.inbound")

# A real event is well under 2 KB; anything near this is not from a portal.
MAX_BODY_BYTES = 64 * 1024
MAX_EVENT_NAME = 64
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
TOKEN_FIELD = "auth[application_token]"


class Refused(Exception):
    """Ends the request with ``status`` and a JSON error."""

    def __init__(self, status: int, code: str, detail: str, retry_after: float = 0) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.retry_after = status, code, detail, retry_after


@csrf_exempt
@require_POST
def bitrix_webhook(request: HttpRequest) -> JsonResponse:
    """Verify, queue, answer; never raises for bad input."""
    refusals = FailureThrottle("webhook_refused", client_address(request))
    try:
        check_not_throttled(refusals)
        form = read_form(request)
        check_token(form.get(TOKEN_FIELD), refusals)
        refusals.forgive()  # the right token: this attempt is not a refusal
        event = event_from_form(form)
    except Refused as refusal:
        response = JsonResponse({"error": refusal.code, "detail": refusal.detail}, status=refusal.status)
        if refusal.retry_after:
            response["Retry-After"] = retry_after(refusal.retry_after)
        return response
    if event is None:
        return JsonResponse({"status": "ignored"})
    try:
        message_id = publish_client().xadd(streams.webhooks_stream(), event.to_fields())
    except redis.RedisError as exc:
        log_lost_event(event, exc)
        detail = "the event queue is unavailable; the event was not recorded"
        return JsonResponse({"error": "queue_unavailable", "detail": detail}, status=503)
    logger.info("[WEBHOOK] Queued %s from %s (message_id: %s)", event.describe(), event.domain or "?", message_id)
    return JsonResponse({"status": "queued", "message_id": message_id})


def read_form(request: HttpRequest):
    """The form fields, refusing bodies no portal sends before parsing them."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY_BYTES:
        raise Refused(413, "body_too_large", f"the body is larger than {MAX_BODY_BYTES} bytes")
    if request.content_type not in FORM_TYPES:
        raise Refused(415, "unsupported_media_type", "send application/x-www-form-urlencoded, as the portal does")
    try:
        return request.POST
    except (SuspiciousOperation, MultiPartParserError) as exc:  # too many fields, broken multipart
        raise Refused(400, "malformed_body", f"the form cannot be read: {type(exc).__name__}") from None


def check_not_throttled(refusals: FailureThrottle) -> None:
    """An address whose tokens were refused too often waits (``THROTTLE_WEBHOOK_REFUSED_RATE``)."""
    wait = refusals.blocked_for()
    if wait is not None:
        raise Refused(429, "throttled", "too many refused tokens from this address; try again later", wait)


def check_token(given: str | None, refusals: FailureThrottle | None = None) -> None:
    """Constant-time comparison with ``BITRIX_INBOUND_TOKEN``; the token is never logged.

    A missing or wrong token counts against the caller's address in ``refusals``.
    """
    expected = settings.BITRIX_INBOUND_TOKEN
    if not expected:
        logger.warning("[WEBHOOK] Refused an event: BITRIX_INBOUND_TOKEN is empty, inbound events are disabled")
        raise Refused(503, "inbound_disabled", "inbound events are disabled: BITRIX_INBOUND_TOKEN is not set")
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        if refusals is not None:
            refusals.record()
        if not given:
            raise Refused(401, "missing_token", f"{TOKEN_FIELD} is required")
        logger.warning("[WEBHOOK] Refused an event with a wrong application token")
        raise Refused(403, "invalid_token", f"{TOKEN_FIELD} does not match")


def event_from_form(form) -> InboundEvent | None:
    """The event to queue, or None for one we do not handle."""
    name = (form.get("event") or "").strip().upper()
    if not name:
        raise Refused(400, "missing_event", "event is required")
    if len(name) > MAX_EVENT_NAME or not name.isascii() or not name.replace("_", "").isalnum():
        raise Refused(400, "invalid_event", "event must be an event name such as ONCRMDEALUPDATE")
    if not is_handled(name):
        logger.debug("[WEBHOOK] Ignored event %s (not handled)", name)
        return None
    domain = (form.get("auth[domain]") or "").strip()
    if len(domain) > MAX_DOMAIN_LENGTH or not domain.isprintable() or " " in domain:
        raise Refused(400, "invalid_domain", f"auth[domain] must be a host name, at most {MAX_DOMAIN_LENGTH} chars")
    try:
        bitrix_id, ts = parse_bitrix_id(form.get("data[FIELDS][ID]")), parse_portal_time(form.get("ts"))
    except InvalidEvent as exc:
        raise Refused(400, exc.code, exc.detail) from None
    return InboundEvent(event=name, bitrix_id=bitrix_id, ts=ts, domain=domain)


def is_handled(name: str) -> bool:
    """Contact events count only when ``BITRIX_INBOUND_CONTACT_UPDATES`` is on."""
    kind = HANDLED_EVENTS.get(name)
    if kind is None:
        return False
    return kind.entity != "contact" or settings.BITRIX_INBOUND_CONTACT_UPDATES


def log_lost_event(event: InboundEvent, exc: Exception) -> None:
    logger.error(
        "[WEBHOOK] Redis unavailable (%s): %s is LOST (the portal does not resend events). "
        "An order's status may now be stale; once Redis is back, run `python manage.py bitrix_pull_deals` "
        "to re-apply the current stage of every linked deal.",
        type(exc).__name__,
        event.describe(),
    )
