"""The worker's configuration: ``settings.BITRIX_WORKER`` with command-line overrides."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from django.conf import settings


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
    # changes coalesce into it, see crmbridge.coalescing); the wait doubles while the record
    # stays hot, up to the maximum (crmbridge.worker.record_pacing). 0: no wait.
    record_interval_seconds: float = 1.0
    record_interval_max_seconds: float = 10.0
    # The most messages one chunk takes: enough to fill a 50-command batch.
    max_chunk: int = 50
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

    def spec_view(self) -> dict:
        """The three keys the specification's ``worker_config`` shows."""
        return {"max_retries": self.max_retries, "batch_size": self.batch_size, "poll_interval": self.poll_interval}
