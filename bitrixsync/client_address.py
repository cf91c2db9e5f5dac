"""The client's address, the one every per-address limit counts (``THROTTLE_NUM_PROXIES``).

Each proxy *appends* the address it received the request from to
``X-Forwarded-For``; whatever the client itself sent stays on the left. So only
the entries written by our own proxies can be trusted, counted from the right:

* ``THROTTLE_NUM_PROXIES=0`` (nothing in front of the app): ``REMOTE_ADDR``
  alone. The header is the client's own words and is ignored;
* ``THROTTLE_NUM_PROXIES=N``: the N-th address from the right of
  ``X-Forwarded-For`` (with one proxy, the last entry: the address the proxy
  saw). The entries further left are the client's and are ignored.

When the header cannot have been written by N proxies -- missing, fewer than N
entries (a request that bypassed a proxy, or a wrong N), or the chosen entry is
not an IP address -- the answer is ``REMOTE_ADDR``: the one address no client
can write. Such requests share their peer's budget, which is stricter, never
looser. Addresses are returned in one spelling (``2001:DB8::7`` and
``2001:db8:0::7`` are one client).

Used by the DRF throttles, the admin login limit, the inbound webhook's
refused-token limit and the ``/metrics`` refused-token limit
(``bitrixsync.throttling``).
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    """The address a per-address limit counts for ``request`` (see the module docstring)."""
    peer = request.META.get("REMOTE_ADDR", "") or "unknown"
    proxies = settings.THROTTLE_NUM_PROXIES
    if proxies <= 0:
        return _canonical(peer) or peer
    entries = [entry.strip() for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    if len(entries) < proxies:
        return _canonical(peer) or peer
    return _canonical(entries[-proxies]) or _canonical(peer) or peer


def _canonical(value: str) -> str | None:
    """``value`` as an IP address in its compressed lower-case form, or None when it is not one."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None
