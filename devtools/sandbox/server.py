"""``SandboxServer``: a local HTTP server that behaves like a Bitrix24 portal.

    server = SandboxServer(rate=2, burst=50).start()
    client = BitrixClient(server.webhook_url)
    ...
    server.stats()["duplicates"]  # ORIGIN_IDs held by more than one record
    server.stop()

Also ``python manage.py bitrix_sandbox``. It binds to 127.0.0.1 by default:
the ``/_sandbox/`` control endpoints have no authentication.
"""

from __future__ import annotations

import threading

from crmbridge.bitrix.webhook_url import redact_url
from devtools.sandbox.faults import Faults
from devtools.sandbox.http_handler import SandboxHTTPServer
from devtools.sandbox.portal import MANAGER_USER_ID, Portal

# Changes made through the control endpoints come from "a manager".


class SandboxServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        user_id: str = "1",
        code: str = "sandbox-secret-code",
        rate: float | None = None,
        burst: int | None = None,
        db_path: str | None = None,
        manager_code: str | None = None,
        handler_url: str | None = None,
        application_token: str = "",
        echo_own_changes: bool = False,
        setup: dict | None = None,
    ) -> None:
        """``rate=None``: no limit (``burst`` defaults to 50 when a rate is set).

        ``manager_code`` enables a second webhook, ``/rest/2/<manager_code>/``, whose
        changes count as someone else's (they fire outbound events). ``setup``: pipelines,
        stages and custom fields (``portal_setup.PortalSetup``).
        """
        self.host = host
        self.user_id = user_id
        self._code = code
        self._manager_code = manager_code
        self._requested_port = port
        self._httpd: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        events = {
            "handler_url": handler_url,
            "application_token": application_token,
            "echo_own_changes": echo_own_changes,
        }
        self.portal = Portal(
            user_id=user_id,
            code=code,
            manager_code=manager_code,
            rate=rate,
            burst=burst,
            db_path=db_path,
            base_url=lambda: self.base_url,
            events=events,
            setup=setup,
        )

    def __repr__(self) -> str:
        return f"SandboxServer({redact_url(self.webhook_url) if self._httpd else 'stopped'})"

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- life cycle -----------------------------------------------------------------
    def start(self) -> SandboxServer:
        """Serve in a daemon thread. A restarted server listens on the port it had before."""
        self._stopping.clear()
        self._httpd = SandboxHTTPServer((self.host, self._requested_port), self.portal, self._stopping)
        self._requested_port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="bitrix-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening, drop open connections and wake delayed answers. Records are kept."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        self._httpd = None
        self.portal.events.stop()

    # -- addresses ---------------------------------------------------------------------
    @property
    def port(self) -> int:
        if not self._requested_port:
            raise RuntimeError("the sandbox has not been started")
        return self._requested_port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def webhook_url(self) -> str:
        """The full URL, code included: hand it to a client, never print it."""
        return f"{self.base_url}/rest/{self.user_id}/{self._code}/"

    @property
    def manager_webhook_url(self) -> str | None:
        return f"{self.base_url}/rest/{MANAGER_USER_ID}/{self._manager_code}/" if self._manager_code else None

    # -- inspection and control: the portal's (also over HTTP: see control.py) ---------------------
    def stats(self) -> dict:
        return self.portal.summary()

    def records(self, entity: str) -> list[dict]:
        return self.portal.records(entity)

    def set_faults(self, **changes) -> Faults:
        return self.portal.set_faults(**changes)

    def set_limit(self, rate: float | None, burst: int | None = None) -> None:
        self.portal.set_limit(rate, burst)

    def set_events(self, **settings) -> dict:
        return self.portal.set_events(**settings)

    def reset(self) -> None:
        self.portal.reset()

    def configure(self, setup: dict) -> dict:
        """Add pipelines, stages, custom fields (see ``portal_setup``); the whole setup."""
        return self.portal.setup.configure(setup)

    def move_deal_stage(self, deal_id: int, stage_id: str) -> dict:
        return self.portal.move_deal_stage(deal_id, stage_id)

    def delete_deal(self, deal_id: int) -> None:
        self.portal.delete_deal(deal_id)
