"""A private Redis Sentinel deployment: one master, one replica, three sentinels, each on a free port.

For the failover test and ``bench/failover.py``. Every server runs in its own
temporary directory with ``--save "" --appendonly no``; nothing here touches a
server it did not start.

The replica reaches the master through ``HoldingProxy``, a TCP forwarder that
can stop passing the master's replication stream on: writes the master then
acknowledges never reach the replica, and after ``SIGKILL`` of the master they
are gone for good -- the "acknowledged but never replicated" entries of a real
failover, made certain instead of left to a race.
"""

from __future__ import annotations

import contextlib
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import redis

from devtools.testing.orphans import die_with_parent
from devtools.testing.ports import free_port, wait_for_port
from devtools.testing.redis_server import PrivateRedis

MASTER_NAME = "bitrixsync"
NOWHERE = "redis://127.0.0.1:1/0"  # see SentinelCluster.env


class HoldingProxy:
    """Forwards ``127.0.0.1:port`` to ``target``; ``hold()`` stops the replication stream from going on.

    Everyone reaches the master through it (the sentinels monitor the proxy's
    address: they re-point a replica that names any other master). A connection
    that sends ``REPLCONF``/``PSYNC`` is a replica's; once held, the master's
    bytes on it are never delivered. Other connections flow as before.

    ``sticky``: like a TCP load balancer, a client connection whose server side
    was closed (Sentinel's ``CLIENT KILL`` on a demoted master) is kept and
    dialled again to the same server, so the client goes on talking to a master
    that is a replica now -- the case where only ``READONLY`` tells it.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.sticky = False
        self._held = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True, name="holding-proxy").start()

    def hold(self) -> None:
        self._held.set()

    def close(self) -> None:
        self._closed.set()
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def _dial(self) -> socket.socket | None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
        except OSError:
            return None
        self._sockets.append(upstream)
        return upstream

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = self._dial()
            if upstream is None:  # the master is gone: refuse, as it would
                client.close()
                continue
            self._sockets.append(client)
            threading.Thread(target=self._link, args=(client, upstream), daemon=True).start()

    def _link(self, client: socket.socket, upstream: socket.socket) -> None:
        replication = False
        try:
            while not self._closed.is_set():
                ready, _, _ = select.select([client, upstream], [], [], 0.1)
                if client in ready:
                    data = client.recv(65536)
                    if not data:
                        break
                    replication = replication or b"REPLCONF" in data.upper() or b"PSYNC" in data.upper()
                    upstream.sendall(data)
                if upstream in ready:
                    try:
                        data = upstream.recv(65536)
                    except OSError:  # reset by the server: closed, as far as the client can tell
                        data = b""
                    if not data:
                        if self.sticky and not replication and (upstream := self._dial()) is not None:
                            continue
                        break
                    if not (replication and self._held.is_set()):  # held: acknowledged, never replicated
                        client.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()


class PrivateSentinel:
    """``redis-server sentinel.conf --sentinel`` watching ``MASTER_NAME``, fast to decide."""

    def __init__(self, master_port: int, *, down_after_ms: int, failover_timeout_ms: int, password: str = "") -> None:
        self.port = free_port()
        self.password = password
        self.dir = Path(tempfile.mkdtemp(prefix="bitrixsync-sentinel-"))
        self.conf = self.dir / "sentinel.conf"
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\nlogfile {self.dir / 'sentinel.log'}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}\n"
            f"sentinel failover-timeout {MASTER_NAME} {failover_timeout_ms}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            + (f"requirepass {password}\nsentinel sentinel-pass {password}\n" if password else "")
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> PrivateSentinel:
        binary = shutil.which("redis-server") or "redis-server"
        self.process = subprocess.Popen([binary, str(self.conf), "--sentinel"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)  # fmt: skip
        wait_for_port(self.port)
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=1, socket_connect_timeout=1,
                           password=self.password or None)  # fmt: skip

    def cleanup(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelCluster:
    """Master, replica (through a ``HoldingProxy``) and three sentinels; ``start()`` waits until all see each other."""

    def __init__(
        self, *, down_after_ms: int = 1000, failover_timeout_ms: int = 2000, sentinel_password: str = ""
    ) -> None:
        self.sentinel_password = sentinel_password
        self.master = PrivateRedis()
        self.proxy: HoldingProxy | None = None
        self.replica: PrivateRedis | None = None
        self.sentinels: list[PrivateSentinel] = []
        self.down_after_ms, self.failover_timeout_ms = down_after_ms, failover_timeout_ms

    def start(self, *, timeout: float = 30.0) -> SentinelCluster:
        self.master.start()
        self.proxy = HoldingProxy(self.master.port)
        self.replica = PrivateRedis(extra=["--replicaof", "127.0.0.1", str(self.proxy.port)]).start()
        self.sentinels = [
            PrivateSentinel(self.proxy.port, down_after_ms=self.down_after_ms,
                            failover_timeout_ms=self.failover_timeout_ms, password=self.sentinel_password).start()
            for _ in range(3)
        ]  # fmt: skip
        self._wait(self._ready, timeout, "sentinels to see each other and the replica")
        return self

    # -- what the app is given ----------------------------------------------------
    @property
    def sentinels_setting(self) -> str:
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def env(self) -> dict[str, str]:
        """The app's settings for this deployment.

        ``REDIS_URL`` gives only the database number with Sentinel; its address is port 1,
        where nothing listens, so that a client which bypassed the factory fails
        loudly instead of writing to someone's Redis on 6379.
        """
        return {"REDIS_SENTINELS": self.sentinels_setting, "REDIS_SENTINEL_MASTER": MASTER_NAME,
                "REDIS_SENTINEL_PASSWORD": self.sentinel_password, "REDIS_URL": NOWHERE}  # fmt: skip

    # -- state ---------------------------------------------------------------------
    def master_port(self) -> int | None:
        """The master's port as the sentinels agree (every answering one), or None while they do not."""
        ports = set()
        for sentinel in self.sentinels:
            try:
                # (redis-py 6.4's sentinel_get_master_addr_by_name is for the Sentinel class only)
                address = sentinel.client().execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
            except redis.RedisError:
                continue
            ports.add(int(address[1]) if address else None)
        return ports.pop() if len(ports) == 1 else None

    def _ready(self) -> bool:
        try:
            for sentinel in self.sentinels:
                state = sentinel.client().sentinel_masters()[MASTER_NAME]
                if state["num-other-sentinels"] < 2 or state["num-slaves"] < 1:
                    return False
            return self.replica.client().info("replication")["master_link_status"] == "up"
        except redis.RedisError:
            return False

    # -- the failure ------------------------------------------------------------------
    def kill_master(self) -> None:
        """SIGKILL the master (writes since ``hold_replication()`` are lost with it)."""
        self.master.stop(kill=True)
        if self.proxy is not None:
            self.proxy.close()

    def hold_replication(self) -> None:
        """From now on, what the master acknowledges stays on the master (see the module docstring)."""
        assert self.proxy is not None
        self.proxy.hold()

    def wait_failover(self, old_port: int, *, timeout: float) -> int:
        """Block until the sentinels agree on a new master that answers as one; return its port."""

        def promoted() -> int | None:
            port = self.master_port()
            if port is None or port == old_port:
                return None
            try:
                role = redis.Redis(port=port, socket_timeout=1, decode_responses=True).info("replication")["role"]
            except redis.RedisError:
                return None
            return port if role == "master" else None

        return self._wait(promoted, timeout, "a new master")

    @staticmethod
    def _wait(condition, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while not (value := condition()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {timeout}s")
            time.sleep(0.05)
        return value

    def cleanup(self) -> None:
        for sentinel in self.sentinels:
            sentinel.cleanup()
        if self.proxy is not None:
            self.proxy.close()
        for server in (self.replica, self.master):
            if server is not None:
                server.stop(kill=True)
                shutil.rmtree(server.dir, ignore_errors=True)
