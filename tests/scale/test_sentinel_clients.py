"""The one Redis factory after a failover: the master is resolved again, never stuck to the old one.

A graceful ``SENTINEL FAILOVER`` demotes the old master to a replica and kills
its client connections (``CLIENT KILL``): a client simply reconnects, asking
the sentinels. Where a connection survives the demotion (a TCP load balancer
that dials the same server again: ``HoldingProxy.sticky``; a single Redis
behind a DNS name that moved), writes answer ``READONLY`` and a blocked
``XREADGROUP`` is woken with ``UNBLOCKED``: both must close the connection and
surface as ``redis.ConnectionError``, which every caller treats as "try again",
so the next connection finds the new master. Real servers throughout.
"""

from __future__ import annotations

import threading

import pytest
import redis

from crmbridge.redis_io.connection import get_redis
from devtools.testing.redis_server import PrivateRedis
from devtools.testing.sentinel import MASTER_NAME
from tests.conftest import wait_for

pytestmark = pytest.mark.slow  # separate redis-server processes


def switch_master(cluster) -> tuple[int, int]:
    """A graceful failover; returns (old, new) ports once the old master serves as a replica."""
    old = cluster.master_port()
    wait_for(lambda: failover_accepted(cluster), timeout=30, what="SENTINEL FAILOVER accepted", interval=0.2)
    new = cluster.wait_failover(old, timeout=30)
    demoted = redis.Redis(port=old, decode_responses=True, socket_timeout=1)
    wait_for(lambda: demoted.info("replication")["role"] == "slave", timeout=30, what="old master demoted")
    return old, new


def failover_accepted(cluster) -> bool:
    """Ask for a failover; False while the sentinel has no replica it trusts yet (-NOGOODSLAVE) or is busy."""
    try:
        return bool(cluster.sentinels[0].client().execute_command("SENTINEL FAILOVER", MASTER_NAME))
    except redis.ResponseError as exc:
        if "NOGOODSLAVE" in str(exc) or "INPROG" in str(exc):
            return False
        raise


def test_a_connection_left_on_the_demoted_master_finds_the_new_one(via_sentinel):
    via_sentinel.proxy.sticky = True  # the first master is behind it: its connections survive the demotion
    patient = get_redis()  # retries, like the worker's client
    hasty = get_redis(retries=False, name="test-publisher")  # none, like the publisher's
    patient.set("before", "1")
    hasty.set("before", "1")  # both hold a connection to the master, through the proxy

    old, new = switch_master(via_sentinel)
    assert old == via_sentinel.proxy.port

    # READONLY (redis-py words it "The previous master is now a slave"): dropped, not stuck on a replica
    with pytest.raises(redis.ConnectionError, match=r"READONLY|previous master"):
        hasty.set("hasty", "1")
    hasty.set("hasty", "2")  # the next connection asked the sentinels
    patient.set("patient", "1")  # retried at once, on the new master
    on_new = redis.Redis(port=new, decode_responses=True)
    assert (on_new.get("hasty"), on_new.get("patient")) == ("2", "1")


@pytest.fixture
def two_servers():
    servers = PrivateRedis().start(), PrivateRedis().start()
    yield servers
    for server in servers:
        server.cleanup()


def test_a_single_redis_turned_replica_drops_the_connection(settings, two_servers):
    """Without Sentinel too: READONLY closes the connection (the next one resolves the name again)."""
    primary, other = two_servers
    settings.REDIS_URL = primary.url
    client = get_redis(retries=False, name="test-single")
    client.set("k", "1")
    primary.client().replicaof("127.0.0.1", other.port)

    with pytest.raises(redis.ConnectionError, match="READONLY"):
        client.set("k", "2")
    assert all(c._sock is None for c in client.connection_pool._available_connections)  # none kept

    primary.client().replicaof("NO", "ONE")
    client.set("k", "3")
    assert primary.client().get("k") == "3"


def test_a_read_blocked_when_its_server_turns_replica_is_a_connection_error(settings, two_servers):
    """``UNBLOCKED ... (master -> replica?)`` is a lost connection for the worker's loop, not an unknown error."""
    primary, other = two_servers
    settings.REDIS_URL = primary.url
    client = get_redis(socket_timeout=15, retries=False, name="test-blocked")
    client.xgroup_create("blocked", "g", id="$", mkstream=True)
    got: dict = {}

    def read() -> None:
        try:
            got["messages"] = client.xreadgroup("g", "c", {"blocked": ">"}, count=1, block=10_000)
        except redis.RedisError as exc:
            got["error"] = exc

    reader = threading.Thread(target=read)
    reader.start()
    wait_for(lambda: primary.client().info("clients")["blocked_clients"] == 1, timeout=10, what="the read blocked")
    primary.client().replicaof("127.0.0.1", other.port)
    reader.join(20)

    assert isinstance(got.get("error"), redis.ConnectionError), got
    assert all(c._sock is None for c in client.connection_pool._available_connections)


class CountingBackoff:
    """A backoff that sleeps 0 and counts how often the retry asked it (redis-py's backoff interface)."""

    def __init__(self) -> None:
        self.asked = 0

    def reset(self) -> None:
        pass

    def compute(self, failures: int) -> float:
        self.asked += 1
        return 0.0


@pytest.mark.parametrize(
    ("error", "attempts"),
    [("unreachable", 1), ("no master yet", 4), ("connection lost", 4)],
)
def test_only_sentinels_that_all_fail_to_answer_skip_the_retries(error, attempts):
    """``FastFailRetry``: a command retried 3 times with backoff, except when not one sentinel answered."""
    from redis.sentinel import MasterNotFoundError

    from crmbridge.redis_io.connection import FastFailRetry, SentinelsUnreachable

    raised = {
        "unreachable": SentinelsUnreachable("no sentinel answers"),
        "no master yet": MasterNotFoundError("no master"),
        "connection lost": redis.ConnectionError("lost"),
    }[error]
    backoff, calls, failed = CountingBackoff(), [], []

    def command():
        calls.append(1)
        raise raised

    with pytest.raises(type(raised)):
        FastFailRetry(backoff, 3).call_with_retry(command, failed.append)

    assert len(calls) == attempts and backoff.asked == attempts - 1
    assert failed and failed[-1] is raised  # the connection is dropped as after any failed attempt


def test_answering_sentinels_without_the_master_are_asked_again_and_silent_ones_are_not(via_sentinel, settings):
    """Real sentinels: a master they do not know is a plain ``MasterNotFoundError`` (retried: during a
    failover it appears a moment later); sentinels that all refuse the connection are ``SentinelsUnreachable``,
    a ``ConnectionError`` like any "Redis away", raised without the retries' backoff."""
    from redis.sentinel import MasterNotFoundError

    from crmbridge.redis_io.connection import SentinelsUnreachable, reset_clients
    from devtools.testing.ports import free_port

    settings.REDIS_SENTINEL_MASTER = "no-such-master"
    reset_clients()
    with pytest.raises(MasterNotFoundError) as unknown:
        get_redis(retries=False).ping()
    assert not isinstance(unknown.value, SentinelsUnreachable)

    settings.REDIS_SENTINELS = [("127.0.0.1", free_port()), ("127.0.0.1", free_port())]
    reset_clients()
    with pytest.raises(SentinelsUnreachable) as silent:
        get_redis().ping()
    assert isinstance(silent.value, redis.ConnectionError)
