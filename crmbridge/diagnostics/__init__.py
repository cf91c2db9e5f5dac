"""Diagnostics: what the status endpoints, the admin dashboard, the doctor and
``/metrics`` show about the sync.

Selectors (``*_status.py``, ``redis_clock.py``) only read, with bounded Redis
calls: ``XINFO STREAM``, ``XINFO GROUPS``, ``XINFO CONSUMERS``, ``XPENDING``
(summary, or extended with ``COUNT``) and ``XRANGE``/``XREVRANGE`` with
``COUNT``. Nothing reads a whole stream, so every page stays fast with a
backlog of millions. Services that change state (the dashboard's buttons) are
in ``stream_actions.py``.
"""
