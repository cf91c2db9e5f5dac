"""Where the data is: "single Redis", or the Sentinel view (master, replicas, sentinels seen).

Read for the status endpoint, the dashboard and ``bitrix_doctor``; it asks the
sentinels directly (short timeouts, each configured one in turn), so it
answers even while no master does. Addresses only: never a password.
"""

from __future__ import annotations

import redis
from django.conf import settings

from crmbridge.redis_io.connection import describe_redis, sentinel_client, sentinel_configured

SENTINEL_TIMEOUT = 0.5  # seconds per sentinel: a dead one must not stall a status page


def redis_topology() -> dict:
    """``mode`` "single" or "sentinel", a one-line ``description``, and the nodes (same keys in both modes).

    ``sentinels`` lists the configured sentinels and whether each answered;
    ``sentinels_seen`` is how many sentinels watch the master as the first one
    that answered knows them (itself and its peers): fewer than configured
    means some cannot vote in a failover.
    """
    if not sentinel_configured():
        where = describe_redis()
        return _topology("single", "single Redis (no Sentinel: no automatic failover)",
                         master=f"{where['host']}:{where['port']}")  # fmt: skip
    name = settings.REDIS_SENTINEL_MASTER
    answers: list[dict] = []
    view: dict | None = None
    for host, port in settings.REDIS_SENTINELS:
        address = f"{host}:{port}"
        client = sentinel_client(host, port, timeout=SENTINEL_TIMEOUT)
        try:
            if view is None:  # the first that answers gives the picture; the others only say they are there
                view = _ask(client, name)
            else:
                client.ping()
        except (redis.RedisError, OSError, KeyError):
            answers.append({"address": address, "answers": False})
            continue
        finally:
            client.close()
        answers.append({"address": address, "answers": True})
    return _sentinel_topology(name, answers, view)


def _ask(client: redis.Redis, name: str) -> dict:
    # redis-py 6.4's sentinel_master/sentinel_sentinels pass options that only its Sentinel class strips.
    master = client.sentinel_masters()[name]  # KeyError: this sentinel does not watch that master
    replicas = client.sentinel_slaves(name)
    peers = client.execute_command("SENTINEL SENTINELS", name)
    return {"master": master, "replicas": replicas, "peers": peers}


def _sentinel_topology(name: str, answers: list[dict], view: dict | None) -> dict:
    answering = sum(1 for a in answers if a["answers"])
    if view is None:
        return _topology("sentinel", f"Sentinel {name!r}: no sentinel answers (0 of {len(answers)})",
                         master_name=name, sentinels=answers)  # fmt: skip
    master = view["master"]
    master_address = f"{master['ip']}:{master['port']}"
    replicas = [
        {"address": f"{r['ip']}:{r['port']}", "state": _state(r)} for r in view["replicas"] if isinstance(r, dict)
    ]
    seen = 1 + len(view["peers"])
    online = sum(1 for r in replicas if r["state"] == "online")
    description = (
        f"Sentinel {name!r}: master {master_address} ({_state(master)}), {online} of {len(replicas)} replica(s) "
        f"online, {answering} of {len(answers)} configured sentinel(s) answer, {seen} seen"
    )
    return _topology("sentinel", description, master_name=name, master=master_address, master_state=_state(master),
                     replicas=replicas, sentinels=answers, sentinels_seen=seen)  # fmt: skip


def _state(node: dict) -> str:
    """ "online", or what the sentinel flags say is wrong (s_down, o_down, disconnected...)."""
    flags = node.get("flags")
    if isinstance(flags, str):
        flags = flags.split(",")
    bad = [f for f in flags or [] if f in ("s_down", "o_down", "disconnected", "failover_in_progress")]
    if not bad and node.get("is_sdown"):
        bad = ["s_down"]
    return ",".join(bad) or "online"


def _topology(mode: str, description: str, **fields) -> dict:
    return {
        "mode": mode,
        "description": description,
        "master_name": fields.get("master_name"),
        "master": fields.get("master"),
        "master_state": fields.get("master_state", "online" if mode == "single" else None),
        "replicas": fields.get("replicas", []),
        "sentinels": fields.get("sentinels", []),
        "sentinels_seen": fields.get("sentinels_seen", 0),
    }
