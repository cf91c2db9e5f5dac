"""A local Bitrix24 portal for tests, benchmarks and a first run without a portal.

==================  ===========================================================
``server``          ``SandboxServer``: start/stop, inspection, control methods
``http_handler``    HTTP parsing (query, JSON, forms) and replies; no stack traces
``portal``          one REST request: auth, leaky-bucket limit, faults, ``batch``
``methods``         ``crm.deal.*``, ``crm.contact.*``, ``profile``
``crm``             how the portal stores, coerces, filters and answers records
``store``           records in memory, optionally in SQLite; ``ORIGIN_ID`` index
``faults``          injected trouble (500, 503, HTML, timeouts, 401/403, 429)
``events``          outbound events (``ONCRMDEALUPDATE``...) to a handler URL
``control``         ``/_sandbox/...`` endpoints (no auth: binds to 127.0.0.1)
``stats``           counters: requests, rate-limited, by method, faults, events
==================  ===========================================================
"""
