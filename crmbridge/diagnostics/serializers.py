"""Output serializers of the status endpoints: the shape, documented for the schema.

The specification's keys come first in each ``data``; the rest are extras.
Every Redis-derived value is ``null`` when ``success`` is false (Redis down).
"""

from rest_framework import serializers


class WorkerConfigSerializer(serializers.Serializer):
    max_retries = serializers.IntegerField()
    batch_size = serializers.IntegerField()
    poll_interval = serializers.FloatField()


class MarkSerializer(serializers.Serializer):
    at = serializers.CharField(help_text="ISO 8601, UTC")
    at_unix = serializers.FloatField()
    detail = serializers.CharField()


class WorkerSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="consumer name, worker_<host>-<pid>")
    host = serializers.CharField()
    pid = serializers.IntegerField(allow_null=True)
    started_at = serializers.CharField(allow_null=True)
    last_beat = serializers.CharField(allow_null=True)
    last_beat_age_seconds = serializers.FloatField()
    fresh = serializers.BooleanField(help_text="beat within 2 x heartbeat interval")
    state = serializers.CharField(help_text="running | paused | stopping | stale")
    pause_reason = serializers.CharField(allow_null=True)
    current = serializers.CharField(allow_null=True)
    processed = serializers.IntegerField()
    retried = serializers.IntegerField()
    dead_lettered = serializers.IntegerField()


class KeyProblemSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="the Redis key, e.g. bitrix:webhooks")
    type = serializers.CharField(help_text="its actual type (TYPE key): string, hash, list, ...")
    expected = serializers.CharField(help_text="what the project keeps there: stream")
    fix = serializers.CharField(help_text="redis-cli commands to look at it and move it aside")


def key_problems_field() -> serializers.ListSerializer:
    return KeyProblemSerializer(
        many=True, allow_null=True, help_text="stream keys holding another type (null: Redis unreachable)"
    )


class WorkerStatusDataSerializer(serializers.Serializer):
    worker_enabled = serializers.BooleanField(help_text="BITRIX_WORKER_ENABLED")
    worker_running = serializers.BooleanField(allow_null=True, help_text="a fresh heartbeat exists")
    worker_task_exists = serializers.BooleanField(allow_null=True, help_text="any heartbeat, fresh or stale")
    worker_task_status = serializers.CharField(allow_null=True, help_text="running | paused | stale | stopped")
    pending_messages_count = serializers.IntegerField(
        allow_null=True, help_text="not acknowledged: pending_delivered + lag, both consumed streams"
    )
    worker_config = WorkerConfigSerializer()
    pending_delivered = serializers.IntegerField(allow_null=True, help_text="delivered, not acknowledged")
    lag = serializers.IntegerField(allow_null=True, help_text="not delivered to any worker yet")
    oldest_pending_age_seconds = serializers.FloatField(allow_null=True)
    pause_reason = serializers.CharField(allow_null=True)
    live_workers = serializers.IntegerField(allow_null=True)
    workers = WorkerSerializer(many=True)
    last_success = MarkSerializer(allow_null=True)
    last_failure = MarkSerializer(allow_null=True)
    key_problems = key_problems_field()


class StreamSerializer(serializers.Serializer):
    length = serializers.IntegerField()
    groups = serializers.IntegerField()
    last_id = serializers.CharField(allow_null=True)


class QueueSerializer(serializers.Serializer):
    stream = serializers.CharField()
    group = serializers.CharField()
    group_exists = serializers.BooleanField()
    lag = serializers.IntegerField()
    pending = serializers.IntegerField()
    unacknowledged = serializers.IntegerField()
    consumers = serializers.IntegerField()
    oldest_pending_age_seconds = serializers.FloatField(allow_null=True)
    last_delivered_id = serializers.CharField(allow_null=True)


class QueuesSerializer(serializers.Serializer):
    operations = QueueSerializer()
    webhooks = QueueSerializer()


class RedisNodeSerializer(serializers.Serializer):
    address = serializers.CharField()
    state = serializers.CharField()


class SentinelNodeSerializer(serializers.Serializer):
    address = serializers.CharField()
    answers = serializers.BooleanField()


class RedisTopologySerializer(serializers.Serializer):
    """``mode`` "single" (one Redis) or "sentinel" (``REDIS_SENTINELS``); addresses only, never a password."""

    mode = serializers.ChoiceField(choices=["single", "sentinel"])
    description = serializers.CharField()
    master_name = serializers.CharField(allow_null=True)
    master = serializers.CharField(allow_null=True)
    master_state = serializers.CharField(allow_null=True)
    replicas = RedisNodeSerializer(many=True)
    sentinels = SentinelNodeSerializer(many=True)
    sentinels_seen = serializers.IntegerField()


class RedisConfigSerializer(serializers.Serializer):
    host = serializers.CharField(allow_null=True)
    port = serializers.IntegerField()
    db = serializers.IntegerField()
    tls = serializers.BooleanField()
    password_set = serializers.BooleanField()
    prefix = serializers.CharField()
    topology = RedisTopologySerializer()


class ContactsSerializer(serializers.Serializer):
    """Since the counters began (issue 20): how users' contacts came to be, across all workers."""

    adopted_email = serializers.IntegerField(help_text="existing contacts adopted by e-mail")
    adopted_phone = serializers.IntegerField(help_text="existing contacts adopted by phone")
    ambiguous = serializers.IntegerField(help_text="adoptions with several candidates (the oldest was taken)")
    created = serializers.IntegerField(help_text="contacts created")


class SyncStatusDataSerializer(serializers.Serializer):
    operations_stream = StreamSerializer(allow_null=True)
    webhooks_stream = StreamSerializer(allow_null=True)
    total_messages = serializers.IntegerField(allow_null=True)
    bitrix_configured = serializers.BooleanField()
    bitrix_enabled = serializers.BooleanField()
    queues = QueuesSerializer(allow_null=True)
    dead_letter_count = serializers.IntegerField(allow_null=True)
    outbox_backlog = serializers.IntegerField()
    last_success = MarkSerializer(allow_null=True)
    last_failure = MarkSerializer(allow_null=True)
    redis = RedisConfigSerializer()
    key_problems = key_problems_field()
    contacts = ContactsSerializer(allow_null=True)


class WorkerStatusResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    message = serializers.CharField()
    data = WorkerStatusDataSerializer()


class SyncStatusResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    message = serializers.CharField()
    data = SyncStatusDataSerializer()
