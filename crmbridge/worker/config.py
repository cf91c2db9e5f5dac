"""The worker's configuration: ``settings.BITRIX_WORKER`` with command-line overrides."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

from django.conf import settings

# The three keys of the specification's ``worker_config``.
SPEC_KEYS = ("max_retries", "batch_size", "poll_interval")


def spec_worker_config(values: Mapping) -> dict:
    """The specification's ``worker_config`` shape from any mapping that has its three keys.

    ``ValueError``/``TypeError``/``KeyError`` when a value is missing or not a number.
    """
    return {
        "max_retries": int(values["max_retries"]),
        "batch_size": int(values["batch_size"]),
        "poll_interval": float(values["poll_interval"]),
    }


@dataclass(frozen=True)
class WorkerConfig:
    max_retries: int = 5
    batch_size: int = 10
    poll_interval: float = 1.0
    claim_idle_seconds: float = 60.0
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 30.0
    pause_probe_seconds: float = 30.0
    heartbeat_seconds: float = 5.0
    # A record synced by this worker less than this ago waits (its message pending, so new
    # changes coalesce into it, see crmbridge.publishing.coalescing); the wait doubles while the record
    # stays hot, up to the maximum (crmbridge.worker.record_pacing). 0: no wait.
    record_interval_seconds: float = 1.0
    record_interval_max_seconds: float = 10.0
    # The most messages one chunk takes under a backlog. A chunk's new contacts are looked up
    # together (``contact_adoption``): one request of up to 50 findbycomm commands serves 500
    # new customers (25 e-mail + 25 phone groups of 20), whose contacts, deals and product rows
    # are 1,500 write commands in 30 full requests. So the lookup costs 1 request in 31; with
    # 100 messages it cost 1 in 4 and the worker reached 74% of the portal's ceiling at 20/s
    # (bench/RESULTS.md). A long chunk is safe: its records' locks are renewed before every
    # request, a live worker's entries are never taken over, and a shutdown stops between
    # requests (what is not sent stays pending for another worker).
    max_chunk: int = 1000
    # Commands per Bitrix request: 50 (batch) normally; 1 = the original design, for benchmarks.
    commands_per_request: int = 50

    @classmethod
    def from_settings(cls, **overrides) -> WorkerConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in settings.BITRIX_WORKER.items() if k in known}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def as_dict(self) -> dict:
        return asdict(self)
