"""``bitrix_doctor``: the specification's troubleshooting workflow and monitoring checklist, run by itself.

Each check gives a ``Finding``: ``OK``, ``WARN``, ``FAIL`` or ``SKIP`` (could not
run, e.g. Redis down), and for anything not OK the likely cause, the fix from
the specification and which of its "Common Issues" it is. The order follows the
workflow: configuration, Redis, streams and group, worker, backlog, failures,
outbox, Bitrix.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import redis
from django.conf import settings

from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.contact_match import findbycomm_problem, matching_modes
from crmbridge.bitrix.webhook_url import redact
from crmbridge.diagnostics.bitrix_check import check_bitrix_connection
from crmbridge.diagnostics.config_facts import redacted_webhook_url, redis_config, redis_target, webhook_problem
from crmbridge.diagnostics.dead_letter_status import dead_letter_count, latest_dead_letter
from crmbridge.diagnostics.key_problems import redis_cli
from crmbridge.diagnostics.outbox_status import outbox_backlog_status
from crmbridge.diagnostics.portal_mapping import check_portal_mapping
from crmbridge.diagnostics.redis_errors import redis_error_reason
from crmbridge.diagnostics.stream_status import group_info, pending_page, queue_status, redis_now_ms, stream_info
from crmbridge.diagnostics.worker_status import read_heartbeats, task_status
from crmbridge.redis_io import streams, telemetry
from crmbridge.redis_io.key_types import WrongType, wrong_type_keys
from crmbridge.redis_io.topology import redis_topology

OK, WARN, FAIL, SKIP = "OK", "WARN", "FAIL", "SKIP"

ISSUE_1 = "Issue 1: Worker Not Running"
ISSUE_2 = "Issue 2: Messages Not Being Published"
ISSUE_3 = "Issue 3: Messages Not Being Processed"
ISSUE_4 = "Issue 4: Processing Failures"
ISSUE_5 = "Issue 5: Consumer Group Issues"


def _ops() -> str:
    return streams.operations_stream()


FIXES = {
    ISSUE_1: lambda: (
        "Check BITRIX_WORKER_ENABLED=true; check the worker's start-up log for errors "
        "('Starting Bitrix worker - entering process_messages()'); start or restart it: "
        "python manage.py run_bitrix_worker"
    ),
    ISSUE_2: lambda: (
        # Only when it is off: "Set BITRIX_ENABLED=true" sends an operator with it on the wrong way.
        ("" if settings.BITRIX_ENABLED else "Set BITRIX_ENABLED=true; ")
        + "check the Redis connection (REDIS_HOST, REDIS_PORT, REDIS_PASSWORD or REDIS_URL); "
        "look for exceptions in the [QUEUE] log lines; check the outbox relay is running"
    ),
    ISSUE_3: lambda: (
        f"Check the group: XINFO GROUPS {_ops()}; check pending: XPENDING {_ops()} {streams.GROUP}; "
        "verify the worker can connect to Redis; look for [WORKER] errors in its log; restart the worker; "
        "retry by hand with 'Retry now' in the admin's Bitrix sync dashboard "
        f"(or XCLAIM {_ops()} {streams.GROUP} worker_<id> 60000 <message_id>)"
    ),
    # No "requeue" here: that is right only where dead letters exist (``_with_requeue_hint``).
    ISSUE_4: lambda: (
        "Check BITRIX_WEBHOOK_URL (portal host, user, code) is right and not expired and the webhook has "
        "the CRM scope; read the Bitrix error in the worker's [WORKER] log lines; fix the configuration or the data"
    ),
    ISSUE_5: lambda: (
        "Restart the worker: it creates the group on start (XGROUP CREATE ... MKSTREAM). By hand: "
        f"XGROUP CREATE {_ops()} {streams.GROUP} 0 MKSTREAM. Look for NOGROUP errors in the log"
    ),
}


@dataclass
class Finding:
    check: str
    status: str
    summary: str
    cause: str = ""
    fix: str = ""
    issue: str = ""
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _problem(check: str, status: str, summary: str, cause: str, issue: str, **details) -> Finding:
    return Finding(check, status, summary, cause=cause, fix=FIXES[issue](), issue=issue, details=details)


@dataclass(frozen=True)
class DoctorOptions:
    pending_threshold: int = 10
    stuck_seconds: float = 300.0
    outbox_stuck_seconds: float = 60.0
    # A backlog whose oldest message is younger than this is a burst a running worker is reading, not a stall.
    backlog_stall_seconds: float = 60.0
    check_bitrix: bool = True


def default_stuck_seconds() -> float:
    """Entries idle this long are stuck: well past the point where a live worker takes them over."""
    return max(300.0, 3 * float(settings.BITRIX_WORKER.get("claim_idle_seconds", 60.0)))


# --- configuration ---------------------------------------------------------------


def check_bitrix_enabled() -> Finding:
    if settings.BITRIX_ENABLED:
        return Finding("config.bitrix_enabled", OK, "BITRIX_ENABLED=true")
    return _problem(
        "config.bitrix_enabled", FAIL, "BITRIX_ENABLED=false: no operation is published",
        "the integration is switched off, so order and user changes are not queued", ISSUE_2,
    )  # fmt: skip


def check_worker_enabled(workers: list[dict] | None) -> Finding:
    if settings.BITRIX_WORKER_ENABLED:
        return Finding("config.worker_enabled", OK, "BITRIX_WORKER_ENABLED=true")
    if workers and any(w["fresh"] for w in workers):
        # A web-only host: its workers run elsewhere with their own environment. Healthy, so no alarm.
        return Finding(
            "config.worker_enabled", OK,
            "BITRIX_WORKER_ENABLED=false here (a host without a worker); workers elsewhere are beating",
        )  # fmt: skip
    return _problem(
        "config.worker_enabled", FAIL, "BITRIX_WORKER_ENABLED=false: the worker exits without consuming",
        "the worker is switched off by configuration", ISSUE_1,
    )  # fmt: skip


def check_webhook_url() -> Finding:
    problem = webhook_problem()
    if problem is None:
        return Finding("config.webhook_url", OK, f"BITRIX_WEBHOOK_URL={redacted_webhook_url()}")
    return _problem("config.webhook_url", FAIL, problem, "no usable webhook URL: nothing can reach Bitrix", ISSUE_4)


# --- Redis -----------------------------------------------------------------------


def redis_down_fix(where: dict) -> str:
    tls = " --tls" if where.get("tls") else ""
    topology = where.get("topology") or {}
    if topology.get("mode") == "sentinel":
        first = (topology.get("sentinels") or [{"address": "?:?"}])[0]["address"].rsplit(":", 1)
        return (
            f"Check the sentinels (REDIS_SENTINELS, REDIS_SENTINEL_MASTER={topology['master_name']}, "
            f"REDIS_SENTINEL_PASSWORD) and the master they name: redis-cli -h {first[0]} -p {first[-1]} "
            f"SENTINEL get-master-addr-by-name {topology['master_name']}; then redis-cli{tls} -h <that host> "
            "-p <that port> ping. Meanwhile orders are kept in the outbox and sent when Redis is back"
        )
    return (
        f"Start Redis or point the app at it: REDIS_URL, or REDIS_HOST/REDIS_PORT/REDIS_PASSWORD (now "
        f"{where['host']}:{where['port']}/{where['db']}); check by hand: redis-cli{tls} -h {where['host']} "
        f"-p {where['port']} ping. Meanwhile orders are kept in the outbox and sent when Redis is back"
    )


def check_redis(client: redis.Redis) -> Finding:
    where = redis_config()
    target = redis_target(where)
    try:
        client.ping()
    except redis.RedisError as exc:
        finding = _problem(
            "redis.reachable", FAIL, f"Redis at {target} does not answer",
            redis_error_reason(exc) + "; publishing falls back to the outbox and workers cannot read", ISSUE_2,
            redis=where,
        )  # fmt: skip
        finding.fix = redis_down_fix(where)
        return finding
    return Finding("redis.reachable", OK, f"Redis at {target} answers (prefix {where['prefix']!r})", details=where)


def check_topology() -> Finding:
    """Single Redis (OK: a fact), or Sentinel: the master, its replicas and the sentinels that answer."""
    topology = redis_topology()
    if topology["mode"] == "single":
        return Finding("redis.topology", OK, topology["description"], details=topology)
    answering = sum(1 for s in topology["sentinels"] if s["answers"])
    if not answering or not topology["master"]:
        fix = "Check REDIS_SENTINELS (host:port,...) and REDIS_SENTINEL_PASSWORD; start the sentinels"
        cause = "no sentinel answers: no client can find the master"
        return Finding("redis.topology", FAIL, topology["description"], cause=cause, fix=fix, details=topology)
    problems = []
    if answering < len(topology["sentinels"]):
        problems.append(f"{len(topology['sentinels']) - answering} configured sentinel(s) do not answer")
    if not any(r["state"] == "online" for r in topology["replicas"]):
        problems.append("no replica online: losing the master loses Redis until it is back")
    if topology["master_state"] != "online":
        problems.append(f"the sentinels see the master as {topology['master_state']}")
    if problems:
        return Finding("redis.topology", WARN, topology["description"], cause="; ".join(problems), details=topology,
                       fix="Start the missing sentinels or replicas; redis-cli -p <sentinel port> "
                           f"SENTINEL replicas {topology['master_name']} shows what the sentinels know")  # fmt: skip
    return Finding("redis.topology", OK, topology["description"], details=topology)


def check_group(client: redis.Redis, stream: str, *, required: bool, worker_running: bool = False) -> Finding:
    """The group exists; the summary leads with what is left to do (unacknowledged), then what is kept.

    A missing stream is normal before the first publish and the first worker
    (workers create it with MKSTREAM); with a running worker it means the
    worker reads another Redis or prefix.
    """
    name = f"streams.group:{stream}"
    for wrong in wrong_type_keys(client, [stream]):
        return wrong_type_finding(
            name, wrong, "no worker consumes it (workers go on with the other streams) and nothing can be added to it"
        )
    info = stream_info(client, stream)
    if group_info(client, stream) is not None:
        queue = queue_status(client, stream, now_ms=redis_now_ms(client))
        summary = (
            f"{stream}: {queue['unacknowledged']} unacknowledged ({queue['lag']} not delivered, "
            f"{queue['pending']} pending); {info['length']} entries kept (acknowledged ones stay until "
            f"retention trims them); group {streams.GROUP} exists"
        )
        return Finding(name, OK, summary, details={**info, "unacknowledged": queue["unacknowledged"]})
    if not client.exists(stream):
        summary = f"{stream} does not exist yet (nothing published, no worker started)"
        if required and worker_running:
            return Finding(
                name, WARN, summary + " although a worker is running",
                cause="the worker creates it on start (MKSTREAM): it reads another Redis database or "
                "REDIS_STREAM_PREFIX than this process",
            )  # fmt: skip
        return Finding(name, OK, summary)
    return _problem(
        name, FAIL, f"{stream} exists but the group {streams.GROUP} is missing (NOGROUP)",
        "the group was deleted or lost (Redis restarted without persistence); nothing reads this stream", ISSUE_5,
        **info,
    )  # fmt: skip


# --- worker ------------------------------------------------------------------------


def check_worker_heartbeat(workers: list[dict]) -> Finding:
    status = task_status(workers)
    fresh = [w for w in workers if w["fresh"]]
    names = ", ".join(w["name"] for w in fresh) or "none"
    if status == "running":
        return Finding("worker.heartbeat", OK, f"{len(fresh)} live worker(s): {names}", details={"status": status})
    if status == "paused":
        reason = next((w["pause_reason"] for w in fresh if w["pause_reason"]), "") or "no reason given"
        finding = _problem(
            "worker.heartbeat", FAIL, f"worker(s) paused: {reason}",
            "the worker paused itself after a configuration error from Bitrix (401/403): nothing syncs",
            ISSUE_4, pause_reason=reason,
        )  # fmt: skip
        probe = float(settings.BITRIX_WORKER.get("pause_probe_seconds", 30.0))
        finding.fix = (
            "Give the webhook back its rights (CRM scope) in the portal, or create a new inbound webhook and set "
            "BITRIX_WEBHOOK_URL to it, then restart the worker. The worker probes the portal every "
            f"{probe:.0f} s and resumes by itself once its webhook is accepted, with the messages it holds "
            "(they stay pending in Redis: nothing is lost)"
        )
        return finding
    if status == "stale":
        last = min(w["last_beat_age_seconds"] for w in workers)
        return _problem(
            "worker.heartbeat", FAIL, f"no fresh heartbeat: the last worker beat {last:.0f} s ago",
            "the worker stopped beating without a clean shutdown (crashed, killed, hung or lost Redis)", ISSUE_1,
        )  # fmt: skip
    return _problem(
        "worker.heartbeat", FAIL, "no worker heartbeat: no worker is running",
        "no run_bitrix_worker process is running (or it cannot reach this Redis)", ISSUE_1,
    )  # fmt: skip


NO_RUNNING_WORKER = "no running worker to take them: see worker.heartbeat"


def check_backlog(client: redis.Redis, options: DoctorOptions, *, worker_running: bool = True) -> Finding:
    """Alarms only for a backlog a running worker is not working through.

    Without a running worker the backlog is the consequence of that one
    failure (``worker.heartbeat``), reported here as a fact, not a second alarm.
    With one, a burst younger than ``backlog_stall_seconds`` or a queue that is
    being processed is normal; FAIL only when messages wait and nothing was
    processed for 5 minutes (Issue 3: worker running but not processing).
    """
    now_ms = redis_now_ms(client)
    queues = [queue_status(client, stream, now_ms=now_ms) for stream in streams.consumed_streams()]
    waiting = sum(q["unacknowledged"] for q in queues)
    details = {q["stream"]: {"pending": q["pending"], "lag": q["lag"]} for q in queues}
    oldest = max((q["oldest_pending_age_seconds"] or 0 for q in queues), default=0)
    summary = f"{waiting} message(s) not acknowledged (pending + lag), oldest {oldest:.0f} s"
    if not waiting:
        return Finding("queue.backlog", OK, summary, details=details)
    if not worker_running:
        return Finding("queue.backlog", OK, f"{summary}; {NO_RUNNING_WORKER}", details=details)
    if waiting < options.pending_threshold:
        return Finding("queue.backlog", OK, summary + f" (< {options.pending_threshold})", details=details)
    recent = sum(row["processed"] for row in telemetry.read_minutes(client, 5))
    if recent:
        summary += f"; draining: {recent} processed in the last 5 minutes"
        return Finding("queue.backlog", OK, summary, details=details)
    if oldest < options.backlog_stall_seconds:
        return Finding("queue.backlog", OK, summary + "; just queued: the worker is reading it", details=details)
    return _problem(
        "queue.backlog", FAIL, summary + "; none processed in the last 5 minutes",
        f"messages are waiting (>= {options.pending_threshold}) and the running worker processes none", ISSUE_3,
        **details,
    )  # fmt: skip


def check_stuck_pending(client: redis.Redis, options: DoctorOptions, *, worker_running: bool = True) -> Finding:
    idle_ms = int(options.stuck_seconds * 1000)
    stuck = {}
    for stream in streams.consumed_streams():
        rows = pending_page(client, stream, count=10, min_idle_ms=idle_ms)
        if rows:
            stuck[stream] = rows
    if not stuck:
        return Finding(
            "queue.stuck_pending", OK, f"no pending message idle for more than {options.stuck_seconds:.0f} s"
        )
    example = next(iter(stuck.values()))[0]
    consumers = sorted({row["consumer"] for page in stuck.values() for row in page})
    if not worker_running:  # the next worker to start takes them over (by heartbeat): one failure, one alarm
        summary = f"pending messages idle > {options.stuck_seconds:.0f} s held by {', '.join(consumers)}"
        return Finding("queue.stuck_pending", OK, f"{summary}; {NO_RUNNING_WORKER}", details={"stuck": stuck})
    return _problem(
        "queue.stuck_pending", FAIL,
        f"pending messages idle > {options.stuck_seconds:.0f} s on {', '.join(stuck)} (e.g. {example['id']})",
        f"held by {', '.join(consumers)}: a worker that died or hangs, and no live worker takes them over",
        ISSUE_3, stuck=stuck,
    )  # fmt: skip


# --- failures ----------------------------------------------------------------------


def wrong_type_finding(check: str, wrong: WrongType, effect: str) -> Finding:
    """FAIL naming the key, its actual type, what that stops, and the redis-cli commands that fix it."""
    return Finding(
        check, FAIL, f"{wrong.describe()}: {effect}",
        cause=f"something wrote a {wrong.actual} under the stream's name (a script, a person with redis-cli, "
        "or another application sharing this Redis and REDIS_STREAM_PREFIX)",
        fix=wrong.fix(redis_cli()), issue=ISSUE_3, details=wrong.as_dict(redis_cli()),
    )  # fmt: skip


RECENT_MINUTES = 5
# Failed attempts (retries and dead letters, invalid messages aside) in RECENT_MINUTES with nothing
# synced that make "nothing syncs" a FAIL: one odd failure in a quiet system is a WARN, not an outage.
NOTHING_SYNCS_FAILURES = 3


@dataclass(frozen=True)
class RecentOutcomes:
    """The worker's counters over the last ``RECENT_MINUTES`` (all workers, from Redis)."""

    processed: int
    failed: int  # retries + dead letters, without invalid messages (no portal call was made for those)
    dead_lettered: int  # likewise without invalid messages

    @property
    def nothing_syncs(self) -> bool:
        return self.processed == 0 and self.failed >= NOTHING_SYNCS_FAILURES

    @classmethod
    def read(cls, client: redis.Redis) -> RecentOutcomes:
        rows = telemetry.read_minutes(client, RECENT_MINUTES)
        invalid = sum(row["by_kind"].get("dead_lettered:invalid:invalid", 0) for row in rows)
        dead = sum(row["dead_lettered"] for row in rows) - invalid
        retried = sum(row["retried"] for row in rows)
        return cls(processed=sum(row["processed"] for row in rows), failed=retried + dead, dead_lettered=dead)


def check_dead_letters(client: redis.Redis) -> Finding:
    """WARN while dead letters wait for an operator; FAIL when they keep coming and nothing syncs."""
    for wrong in wrong_type_keys(client, [streams.dead_letter_stream()]):
        effect = "messages that fail cannot be dead-lettered: they stay pending and are retried"
        return wrong_type_finding("failures.dead_letters", wrong, effect)
    count = dead_letter_count(client)
    if not count:
        return Finding("failures.dead_letters", OK, "no dead letters")
    latest = latest_dead_letter(client) or {}
    error = " ".join(filter(None, (latest.get("error_code"), latest.get("error_description"))))
    summary = f"{count} dead letter(s); latest: {latest.get('reason', '?')} {error}".strip()
    recent = RecentOutcomes.read(client)
    growing = recent.dead_lettered > 0 and recent.nothing_syncs
    if growing:
        summary = f"{recent.dead_lettered} new in the last {RECENT_MINUTES} min and nothing synced; {summary}"
    finding = _problem(
        "failures.dead_letters", FAIL if growing else WARN, summary,
        "messages failed permanently or ran out of retries", ISSUE_4, latest=latest, count=count,
    )  # fmt: skip
    finding.fix = (
        "Read each letter's error on the admin's Bitrix sync dashboard (Dead letters); fix the data or the "
        f"configuration (BITRIX_WEBHOOK_URL, the webhook's rights), then requeue the {count} dead letter(s) there "
        "(or delete those that can never succeed)"
    )
    return finding


def check_recent_errors(client: redis.Redis) -> Finding:
    """WARN when the last attempt failed; FAIL when every attempt of the last minutes failed (nothing syncs)."""
    success, failure = telemetry.read_mark(client, "success"), telemetry.read_mark(client, "failure")
    success_at = success["at"] if success else 0.0
    failure_at = failure["at"] if failure else 0.0
    if failure_at and failure_at > success_at:
        detail = redact(failure["detail"])
        ago = time.time() - failure_at
        recent = RecentOutcomes.read(client)
        if recent.nothing_syncs:
            summary = (
                f"nothing synced in the last {RECENT_MINUTES} min while {recent.failed} attempt(s) failed; "
                f"last failure {ago:.0f} s ago: {detail}"
            )
            return _problem("failures.recent", FAIL, summary, "every recent call to the portal failed", ISSUE_4,
                            detail=detail, failed=recent.failed)  # fmt: skip
        return _problem(
            "failures.recent", WARN, f"last failure {ago:.0f} s ago, no success since: {detail}",
            "the latest attempt failed", ISSUE_4, detail=detail,
        )  # fmt: skip
    if success_at:
        return Finding("failures.recent", OK, f"last success {time.time() - success_at:.0f} s ago")
    return Finding("failures.recent", OK, "no success or failure recorded yet")


# --- outbox and Bitrix -------------------------------------------------------------


def check_outbox(options: DoctorOptions, client: redis.Redis | None = None) -> Finding:
    """Operations committed but not in Redis. Rows already in Redis awaiting their deferred delete do not count."""
    backlog = outbox_backlog_status(client)
    count, age = backlog.waiting, backlog.oldest_waiting_seconds or 0.0
    if not count:
        summary = "outbox empty: every committed operation reached Redis"
        if backlog.already_sent:
            summary = (
                f"every committed operation reached Redis ({backlog.already_sent} row(s) already in Redis "
                "await their deferred delete by the relay)"
            )
        return Finding("publish.outbox", OK, summary)
    summary = f"{count} operation(s) waiting in the outbox, oldest {age:.0f} s"
    if age > options.outbox_stuck_seconds:
        blocked = wrong_type_keys(client, streams.consumed_streams()) if client is not None else []
        cause = "committed operations are not reaching Redis: Redis unreachable from the app, or the relay is down"
        if blocked:
            cause = "Redis refuses them: " + "; ".join(wrong.describe() for wrong in blocked)
        if backlog.last_error:
            cause += f" (last error: {redact(backlog.last_error)[:200]})"
        finding = _problem("publish.outbox", FAIL, summary, cause, ISSUE_2, count=count, oldest_seconds=age)
        if blocked:
            checks = ", ".join(f"streams.group:{wrong.key}" for wrong in blocked)
            finding.fix = f"Move the key aside (the fix of {checks}); the relay then sends them by itself"
        return finding
    status = WARN if count >= options.pending_threshold else OK
    return Finding("publish.outbox", status, summary, details={"count": count})


def check_bitrix_api(options: DoctorOptions) -> Finding:
    if not options.check_bitrix:
        return Finding("bitrix.api", SKIP, "skipped (--skip-bitrix)")
    if webhook_problem() is not None:
        return Finding("bitrix.api", SKIP, "skipped: no usable webhook URL")
    result = check_bitrix_connection()
    if result.ok:
        return Finding("bitrix.api", OK, f"profile: {result.summary}")
    if result.kind == "unavailable":
        return Finding("bitrix.api", WARN, result.summary)
    causes = {
        "config": "the portal refused the webhook (wrong or expired code, or missing rights): configuration",
        "retry": "the portal is unreachable or overloaded (network, 5xx, rate limit)",
        "permanent": "the portal rejected the call",
    }
    return _problem(
        "bitrix.api", FAIL, f"profile failed: {result.summary}", causes.get(result.kind or "", "unknown"), ISSUE_4,
        kind=result.kind, code=result.code, http_status=result.http_status,
    )  # fmt: skip


def check_contact_match(options: DoctorOptions) -> Finding:
    """Existing customers (issue 20): with ``BITRIX_CONTACT_MATCH`` on, the webhook must be allowed ``findbycomm``."""
    check = "bitrix.contact_match"
    if not matching_modes():
        return Finding(check, OK, "BITRIX_CONTACT_MATCH=off: contacts are created without looking for existing ones")
    if not options.check_bitrix:
        return Finding(check, SKIP, "skipped (--skip-bitrix)")
    if webhook_problem() is not None:
        return Finding(check, SKIP, "skipped: no usable webhook URL")
    client = BitrixClient.from_settings()
    try:
        problem = findbycomm_problem(client)
    finally:
        client.close()
    if problem:
        return Finding(
            check, FAIL, problem,
            cause="the webhook's user lacks the rights for the duplicate search: new contacts wait (the worker pauses)",
            fix="give the webhook's user the CRM scope and read access to contacts, or set BITRIX_CONTACT_MATCH=off",
        )  # fmt: skip
    setting = ",".join(matching_modes())
    return Finding(check, OK, f"BITRIX_CONTACT_MATCH={setting}: the webhook may call crm.duplicate.findbycomm")


def check_lost_records(client: redis.Redis) -> Finding:
    """Records waiting longer than ``BITRIX_RECONCILE_AFTER`` with no message anywhere.

    ``crmbridge.worker.reconcile`` finds them; a running worker queues them again.
    """
    from crmbridge.worker.reconcile import lost_records

    lost = lost_records(client)
    after = settings.BITRIX_RECONCILE_AFTER
    if not lost:
        return Finding("sync.lost_records", OK, f"every record waiting over {after:.0f} s has a message on its way")
    sample = ", ".join(f"{entity} {local_id}" for entity, local_id in lost[:5])
    return Finding(
        "sync.lost_records", FAIL,
        f"{len(lost)} record(s) waiting over {after:.0f} s with no message in Redis or the outbox (e.g. {sample})",
        cause="Redis lost its data (restarted without persistence, replaced, or failed over to a replica "
        "that missed the last writes), so their operations are gone",
        fix="A running worker queues them again within BITRIX_RECONCILE_INTERVAL "
        f"({settings.BITRIX_RECONCILE_INTERVAL:.0f} s; log: '[WORKER] Reconciliation: ...'); start one "
        "(python manage.py run_bitrix_worker), or queue them now: python manage.py bitrix_resync "
        "(--orders or --users); give Redis persistence (appendonly yes) so it does not happen again",
        issue=ISSUE_3, details={"count": len(lost), "records": [f"{e}:{i}" for e, i in lost[:20]]},
    )  # fmt: skip


# --- running it all ----------------------------------------------------------------


def _guarded(check: str, run: Callable[[], Finding]) -> Finding:
    try:
        return run()
    except redis.RedisError as exc:
        return Finding(check, FAIL, redis_error_reason(exc), cause="Redis failed during the check", issue=ISSUE_2)


def _read_workers(client: redis.Redis) -> list[dict] | None:
    try:
        return read_heartbeats(client)
    except redis.RedisError:
        return None


def _hooks() -> str:
    return streams.webhooks_stream()


def run_doctor(client: redis.Redis, options: DoctorOptions) -> list[Finding]:
    findings = [check_bitrix_enabled(), check_webhook_url()]
    reach = check_redis(client)
    workers = _read_workers(client) if reach.status == OK else None
    findings.insert(1, check_worker_enabled(workers))
    findings += [reach, check_topology()]
    running = task_status(workers or []) == "running"
    redis_checks: list[tuple[str, Callable[[], Finding]]] = [
        (f"streams.group:{_ops()}", lambda: check_group(client, _ops(), required=True, worker_running=running)),
        (f"streams.group:{_hooks()}", lambda: check_group(client, _hooks(), required=False)),
        ("worker.heartbeat", lambda: check_worker_heartbeat(workers or [])),
        ("queue.backlog", lambda: check_backlog(client, options, worker_running=running)),
        ("queue.stuck_pending", lambda: check_stuck_pending(client, options, worker_running=running)),
        ("failures.dead_letters", lambda: check_dead_letters(client)),
        ("failures.recent", lambda: check_recent_errors(client)),
        ("sync.lost_records", lambda: check_lost_records(client)),
    ]
    for name, run in redis_checks:
        findings.append(_guarded(name, run) if reach.status == OK else Finding(name, SKIP, "skipped: Redis is down"))
    findings.append(_outbox_or_database_error(options, client if reach.status == OK else None))
    findings.append(check_bitrix_api(options))
    findings.extend(Finding(**found) for found in check_portal_mapping(enabled=options.check_bitrix))
    findings.append(check_contact_match(options))
    return _with_requeue_hint(findings)


def _with_requeue_hint(findings: list[Finding]) -> list[Finding]:
    """Where dead letters exist, a processing-failure fix ends by saying to requeue them, with their number.

    Only then: "requeue dead letters" shown with none to requeue sent operators looking for them.
    """
    dead = next((f for f in findings if f.check == "failures.dead_letters"), None)
    count = int(dead.details.get("count") or 0) if dead else 0
    if not count:
        return findings
    for finding in findings:
        if finding.issue == ISSUE_4 and finding.check != "failures.dead_letters" and finding.fix:
            finding.fix += f"; then requeue the {count} dead letter(s) from the admin's Bitrix sync dashboard"
    return findings


def _outbox_or_database_error(options: DoctorOptions, client: redis.Redis | None) -> Finding:
    from django.db import DatabaseError

    try:
        return check_outbox(options, client)
    except DatabaseError as exc:
        summary = f"cannot read the outbox: {type(exc).__name__}: {redact(str(exc))[:200]}"
        return Finding("publish.outbox", FAIL, summary, cause="the database is unreachable or not migrated")


def exit_code(findings: list[Finding], *, strict: bool = False) -> int:
    """0: nothing failed (warnings allowed); 1: something failed (or warned, with ``strict``)."""
    bad = {FAIL, WARN} if strict else {FAIL}
    return 1 if any(f.status in bad for f in findings) else 0
