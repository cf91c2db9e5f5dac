"""Diagnostics: what the status endpoints, the admin dashboard, the doctor and
``/metrics`` show about the sync.

* ``status_views.py``, ``serializers.py``  the specification's two status endpoints
* ``dashboard_views.py``, ``minute_chart.py``, ``stream_actions.py``  the admin dashboard
* ``doctor.py``, ``bitrix_check.py``  ``manage.py bitrix_doctor`` and "Test connection"
* ``metrics.py``  ``GET /metrics`` (Prometheus)
* ``health.py``  ``GET /healthz`` and ``GET /readyz`` (probes; unauthenticated)
* selectors: ``worker_status.py``, ``stream_status.py``, ``sync_status.py``,
  ``dead_letter_status.py``, ``config_facts.py``, ``timestamps.py``, ``redis_errors.py``

Selectors only read, with bounded Redis calls: ``XINFO STREAM``, ``XINFO
GROUPS``, ``XINFO CONSUMERS``, ``XPENDING`` (summary, or extended with
``COUNT``) and ``XRANGE``/``XREVRANGE`` with ``COUNT``. Nothing reads a whole
stream, so every page stays fast with a backlog of millions. Each Redis record
the workers write is parsed once, in ``crmbridge.redis_io`` (``telemetry``,
``streams``); these modules shape it for display. Services that change state
(the dashboard's buttons) are in ``stream_actions.py``.
"""
