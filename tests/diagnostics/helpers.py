"""Set up Redis states on purpose: heartbeats, groups, pending and undelivered entries."""

from __future__ import annotations

import json
import time

import redis

from crmbridge.publishing.messages import Operation
from crmbridge.redis_io import streams, telemetry
from crmbridge.worker.dead_letters import DeadLetter, move_to_dead_letters

HEARTBEAT = 5.0


def beat(
    client: redis.Redis, name: str = "worker_host-1", *, state: str = "running", age: float = 0.0, **extra
) -> None:
    """A worker heartbeat as the worker writes it; ``age`` seconds old."""
    fields = {
        "name": name,
        "host": "host",
        "pid": 1,
        "started_at": f"{time.time() - 60:.3f}",
        "state": state,
        "pause_reason": extra.pop("pause_reason", ""),
        "processed": 3,
        "retried": 1,
        "dead_lettered": 0,
        "current": "",
        "config": {"max_retries": 5, "batch_size": 10, "poll_interval": 1.0, "heartbeat_seconds": HEARTBEAT},
        **extra,
    }
    telemetry.write_heartbeat(client, name, fields, ttl_seconds=HEARTBEAT * 3 + age)
    if age:
        then = time.time() - age
        client.hset(telemetry.worker_key(name), "last_beat", f"{then:.3f}")
        client.zadd(telemetry.workers_index_key(), {name: then})


def create_group(client: redis.Redis, stream: str | None = None) -> None:
    for name in [stream] if stream else streams.consumed_streams():
        try:
            client.xgroup_create(name, streams.GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


def publish(client: redis.Redis, count: int, *, entity: str = "deal", stream: str | None = None) -> list[str]:
    target = stream or streams.operations_stream()
    return [client.xadd(target, Operation(entity, "update", i + 1).to_fields()) for i in range(count)]


def deliver(client: redis.Redis, count: int, *, consumer: str = "worker_host-1", stream: str | None = None) -> list:
    """Read ``count`` entries as ``consumer`` without acknowledging them (they become pending)."""
    target = stream or streams.operations_stream()
    answer = client.xreadgroup(streams.GROUP, consumer, {target: ">"}, count=count)
    return answer[0][1] if answer else []


def add_dead_letters(client: redis.Redis, count: int, *, reason: str = "permanent_error") -> list[str]:
    """Publish, deliver and dead-letter ``count`` operations; return the dead-letter IDs."""
    create_group(client, streams.operations_stream())
    ids = publish(client, count)
    entries = deliver(client, count)
    letters = [
        DeadLetter(
            source_stream=streams.operations_stream(),
            source_id=entry_id,
            payload=fields,
            reason=reason,
            error_code="ERROR_CORE",
            error_description="Invalid e-mail",
            attempts=1,
        )
        for entry_id, fields in entries
    ]
    move_to_dead_letters(client, letters)
    assert len(ids) == count
    return [entry_id for entry_id, _ in client.xrange(streams.dead_letter_stream())]


def mark(client: redis.Redis, which: str, *, ago: float = 0.0, detail: str = "") -> None:
    client.set(streams.key(f"last_{which}"), json.dumps({"at": time.time() - ago, "detail": detail}))
