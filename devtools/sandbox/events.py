"""Outbound events: the sandbox calls a handler URL when its deals change, like a portal.

The portal POSTs a form (``event=ONCRMDEALUPDATE``, ``data[FIELDS][ID]``,
``ts``, ``auth[...]``) and does not retry: delivery here is fire and forget
from one background thread, in order.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable

import requests

logger = logging.getLogger("devtools.sandbox.events")

DELIVERY_TIMEOUT_SECONDS = 5.0


class EventSender:
    def __init__(
        self,
        *,
        base_url: Callable[[], str],
        on_result: Callable[[bool], None],
        handler_url: str | None = None,
        application_token: str = "",
        echo_own_changes: bool = False,
    ) -> None:
        self._base_url = base_url  # known only once the server listens
        self._on_result = on_result
        self.handler_url = handler_url
        self.application_token = application_token
        # A real portal also reports changes the integration made itself; off by
        # default so that a test sees the changes "someone else" made.
        self.echo_own_changes = echo_own_changes
        self._queue: queue.Queue[dict | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def configure(self, *, handler_url: str | None, application_token: str, echo_own_changes: bool) -> None:
        self.handler_url = handler_url or None
        self.application_token = application_token
        self.echo_own_changes = echo_own_changes

    def settings(self) -> dict:
        return {
            "handler_url": self.handler_url,
            "application_token": self.application_token,
            "echo_own_changes": self.echo_own_changes,
        }

    def deal_changed(self, event: str, deal_id: int, *, own_change: bool) -> None:
        """Queue ``event`` (``ONCRMDEALADD`` / ``UPDATE`` / ``DELETE``) for deal ``deal_id``."""
        if self.handler_url is None or (own_change and not self.echo_own_changes):
            return
        self._start_thread()
        self._queue.put({"url": self.handler_url, "form": self._form(event, deal_id)})

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=DELIVERY_TIMEOUT_SECONDS + 1)
            self._thread = None

    def _form(self, event: str, deal_id: int) -> dict[str, str]:
        base = self._base_url()
        domain = base.split("://", 1)[-1]
        return {
            "event": event,
            "event_handler_id": "1",
            "data[FIELDS][ID]": str(deal_id),
            "ts": str(int(time.time())),
            "auth[domain]": domain,
            "auth[client_endpoint]": f"{base}/rest/",
            "auth[server_endpoint]": f"{base}/rest/",
            "auth[member_id]": hashlib.md5(domain.encode()).hexdigest(),  # an identifier, not security
            "auth[application_token]": self.application_token,
        }

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._deliver, name="sandbox-events", daemon=True)
                self._thread.start()

    def _deliver(self) -> None:
        with requests.Session() as session:
            while (item := self._queue.get()) is not None:
                try:
                    response = session.post(item["url"], data=item["form"], timeout=DELIVERY_TIMEOUT_SECONDS)
                    delivered = response.status_code < 400
                except requests.RequestException as exc:
                    logger.debug("Event delivery failed: %s", type(exc).__name__)
                    delivered = False
                self._on_result(delivered)
