"""``manage.py run_stack`` (what ``./run.sh`` runs), started for real on free ports.

It lives here with the API tests because what it proves is that the API is
served: the specification's manual test (register, token, POST /orders) works
against the stack, and the worker writes the Bitrix deal ID back.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.dev_stack import describe_url
from devtools.testing.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
# Variables of the developer's shell that would change what the stack (or a second command) does.
CLEARED_PREFIXES = ("REDIS_", "BITRIX_", "DEV_ADMIN", "DATABASE_URL", "STACK_ENV_FILE", "WEB_PORT", "DEBUG")
# A new terminal has neither: pytest's marker would give a child a tests-only SECRET_KEY.
NOT_IN_A_NEW_TERMINAL = (*CLEARED_PREFIXES, "SECRET_KEY", "PYTEST_VERSION")
pytestmark = pytest.mark.slow


class Stack:
    def __init__(self, tmp_path: Path, **env: str | None) -> None:
        self.tmp = tmp_path
        self.web_port, self.redis_port, self.sandbox_port = free_port(), free_port(), free_port()
        self.log = tmp_path / "stack.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED_PREFIXES)}
        # The stack's settings for other commands: in the test's folder, never the checkout's .env.stack
        # (except where a test says otherwise: test_a_second_terminal_sees_the_stacks_settings).
        self.env["STACK_ENV_FILE"] = str(tmp_path / ".env.stack")
        self.env.update(
            DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
            REDIS_HOST="127.0.0.1",
            REDIS_PORT=str(self.redis_port),
            WEB_PORT=str(self.web_port),
            BITRIX_SANDBOX_PORT=str(self.sandbox_port),
            BITRIX_WORKER_POLL_INTERVAL="0.2",
            **env,
        )
        self.env = {k: v for k, v in self.env.items() if v is not None}  # None: unset
        self.process: subprocess.Popen | None = None

    def start(self) -> Stack:
        manage = [sys.executable, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "-v0"], env=self.env, cwd=ROOT, check=True, timeout=120)
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [*manage, "run_stack", "--var-dir", str(self.tmp / "var")],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_for(lambda: "Ctrl-C stops everything." in self.output(), what="the banner")
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, check, *, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert self.process is None or self.process.poll() is None or what == "exit", self.output()[-3000:]
            assert time.monotonic() < deadline, f"no {what} after {timeout}s:\n{self.output()[-3000:]}"
            time.sleep(0.1)

    def pid_of(self, name: str) -> int:
        pids = re.findall(rf"started {name} \(pid (\d+)\)", self.output())
        return int(pids[-1])

    def stop(self, sig: int = signal.SIGINT) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=60)

    def stop_for_good(self) -> None:
        """Ctrl-C (the stack stops its children), then SIGKILL; then any child still alive.

        A SIGKILLed stack cannot stop its children, which run in process groups of their own:
        they were left running after the suite (a worker beating into a deleted Redis for hours).
        """
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        for pid in re.findall(r"started \w+ \(pid (\d+)\)", self.output()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(pid), signal.SIGKILL)

    def api(self, method: str, path: str, body: dict | None = None, token: str = "") -> dict:
        response = self.request(method, path, body, token)
        assert response.status < 400, (response.status, response.body[:500])
        return json.loads(response.body)

    def request(self, method: str, path: str, body: dict | None = None, token: str = "") -> Answer:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.web_port}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return Answer(response.status, response.read(), dict(response.headers))
        except urllib.error.HTTPError as error:
            return Answer(error.code, error.read(), dict(error.headers))


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict


def port_closed(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def stack_factory(tmp_path):
    stacks: list[Stack] = []

    def make(**env: str | None) -> Stack:
        stacks.append(Stack(tmp_path, **env))
        return stacks[-1].start()

    yield make
    for stack in stacks:  # never leave a stack or its children running, whatever the test did
        stack.stop_for_good()


def test_stack_serves_the_manual_test_and_stops_everything_on_ctrl_c(stack_factory):
    stack = stack_factory(DEV_ADMIN_EMAIL="boss@example.com", DEV_ADMIN_PASSWORD="Boss-pass-123")
    output = stack.output()
    assert f"http://127.0.0.1:{stack.web_port}/api/docs" in output
    assert f"http://127.0.0.1:{stack.web_port}/admin/" in output
    assert "redis-server started by run_stack" in output
    assert "boss@example.com" in output

    token = stack.api("POST", "/auth/register", {"email": "jane@example.com", "password": "Unusual-horse-9"})["token"]
    order = stack.api("POST", "/orders", {"service_id": "cnc-milling", "quantity": 2}, token)
    assert stack.api("PUT", f"/orders/{order['id']}", {"quantity": 5}, token)["quantity"] == 5
    assert stack.api("PUT", "/profile", {"email": "newemail@example.com"}, token)["email"] == "newemail@example.com"
    admin_token = stack.api("POST", "/auth/token", {"email": "boss@example.com", "password": "Boss-pass-123"})
    assert stack.api("GET", "/profile", token=admin_token["token"])["is_staff"] is True
    if "started sandbox" in output and "started worker" in output:
        stack.wait_for(
            lambda: stack.api("GET", f"/orders/{order['id']}", token=token)["bitrix_deal_id"],
            what="the deal ID written back",
            timeout=30,
        )

    bad = stack.request("POST", "/orders", {"service_id": "teleportation"}, token)
    assert bad.status == 400
    stack.wait_for(lambda: '"POST /orders HTTP/1.1" 400' in stack.output(), what="the access line of the 400")
    web_lines = [line for line in stack.output().splitlines() if line.lstrip().startswith("web |")]
    assert any('"GET /profile HTTP/1.1" 200' in line for line in web_lines)  # access lines are kept
    assert sum("Bad Request: /orders" in line for line in web_lines) == 1  # once, not twice

    assert stack.stop(signal.SIGINT) == 0
    assert all(port_closed(p) for p in (stack.web_port, stack.redis_port, stack.sandbox_port))
    stopped = re.findall(r"stopping (\w+)", stack.output())
    assert stopped[0] == "web" and stopped[-1] == "redis"


def test_fakeredis_fallback_without_redis_server(stack_factory):
    # A PATH with Python but without redis-server.
    stack = stack_factory(PATH=str(Path(sys.executable).parent), BITRIX_WEBHOOK_URL="http://127.0.0.1:9/rest/1/dummy/")

    assert "DEVELOPMENT FALLBACK" in stack.output()
    token = stack.api("POST", "/auth/register", {"email": "jane@example.com", "password": "Unusual-horse-9"})["token"]
    assert stack.api("POST", "/orders", {"service_id": "welding", "quantity": 1}, token)["id"]
    assert stack.stop(signal.SIGTERM) == 0
    assert port_closed(stack.redis_port)


def test_a_dead_worker_is_restarted_and_a_dead_web_app_stops_everything(stack_factory):
    stack = stack_factory(BITRIX_WEBHOOK_URL="http://127.0.0.1:9/rest/1/dummy/")
    if "started worker" not in stack.output():
        pytest.fail("run_bitrix_worker is missing: the worker was not started")

    first_worker = stack.pid_of("worker")
    os.kill(first_worker, signal.SIGKILL)
    stack.wait_for(lambda: stack.output().count("started worker") == 2, what="the worker restarted")
    assert "worker DIED" in stack.output()

    os.kill(stack.pid_of("web"), signal.SIGKILL)
    stack.wait_for(lambda: stack.process.poll() is not None, what="exit")
    assert stack.process.returncode == 1
    assert "web EXITED UNEXPECTEDLY" in stack.output()
    assert port_closed(stack.redis_port)


def test_the_admin_is_styled_even_with_debug_false_from_the_env_file(stack_factory):
    # `cp .env.example .env` gives DEBUG=false (and then a SECRET_KEY is required); runserver then
    # serves no static files by itself.
    stack = stack_factory(
        DEBUG="false", SECRET_KEY="a-test-only-key-" + "x" * 40, BITRIX_WEBHOOK_URL="http://127.0.0.1:9/rest/1/dummy/"
    )

    css = stack.request("GET", "/static/admin/css/base.css")

    assert css.status == 200
    assert css.headers.get("Content-Type", "").startswith("text/css")
    assert b"body" in css.body
    assert stack.request("GET", "/static/admin/css/no-such-file.css").status == 404
    assert stack.stop(signal.SIGTERM) == 0


def manage_in_a_second_terminal(*args: str) -> subprocess.CompletedProcess:
    """``python manage.py <args>`` of this checkout with none of the stack's variables: a new terminal."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(NOT_IN_A_NEW_TERMINAL)}
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_a_second_terminal_sees_the_stacks_settings(stack_factory):
    checkout_file = ROOT / ".env.stack"
    if checkout_file.exists():
        pytest.skip(f"{checkout_file} exists: a ./run.sh of this checkout is running (or crashed); stop it first")
    stack = stack_factory(STACK_ENV_FILE=None)  # unset: the default, <checkout>/.env.stack
    assert f"{checkout_file.name}" in stack.output()  # the banner says where the settings are
    assert checkout_file.stat().st_mode & 0o077 == 0  # it holds the webhook code: private

    doctor = manage_in_a_second_terminal("bitrix_doctor", "--json")

    report = json.loads(doctor.stdout)
    checks = {check["check"]: check for check in report["checks"]}
    assert checks["config.webhook_url"]["status"] == "OK", checks["config.webhook_url"]
    assert f":{stack.sandbox_port}/" in checks["config.webhook_url"]["summary"]
    assert checks["redis.reachable"]["status"] == "OK"
    assert checks["bitrix.api"]["status"] == "OK"
    assert checks["redis.reachable"]["details"]["port"] == stack.redis_port
    # The stack runs with DEBUG on (no SECRET_KEY needed); so do the commands of its second terminal.
    assert manage_in_a_second_terminal("check").returncode == 0

    assert stack.stop(signal.SIGINT) == 0
    assert not checkout_file.exists()  # removed on exit: no command talks to a stopped stack


def test_describe_url_hides_the_password():
    assert describe_url("rediss://:s3cret@host:6380/2") == "rediss://:****@host:6380/2"
    assert describe_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_a_hung_worker_is_restarted_with_the_reason(stack_factory):
    """Issue 19 item 12: a worker that runs but stopped beating (here: SIGSTOP) is killed and started again."""
    import socket

    import redis

    stack = stack_factory(BITRIX_WEBHOOK_URL="http://127.0.0.1:9/rest/1/dummy/", BITRIX_WORKER_HEARTBEAT="0.5")
    first = stack.pid_of("worker")
    client = redis.Redis(port=stack.redis_port, decode_responses=True)
    consumer = f"worker_{socket.gethostname()}-{first}"
    stack.wait_for(lambda: client.hget("bitrix:worker_beats", consumer), what="the worker's first heartbeat")

    os.kill(first, signal.SIGSTOP)  # alive for the OS, silent for everyone else

    stack.wait_for(lambda: stack.output().count("started worker") == 2, what="the hung worker restarted", timeout=30)
    assert re.search(r"worker HUNG \(pid \d+\): no heartbeat for \d+ s \(3 beats of 0\.5 s\)", stack.output())
    assert "worker DIED" not in stack.output()
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)  # killed and reaped, not left stopped
    second = stack.pid_of("worker")
    stack.wait_for(lambda: client.hget("bitrix:worker_beats", f"worker_{socket.gethostname()}-{second}"),
                   what="the new worker beating")  # fmt: skip
