"""The development stack behind ``./run.sh`` (``python manage.py run_stack``).

One foreground process that supervises the others, like a tiny Procfile runner:

1. Redis: used as it is when one answers at ``settings.REDIS_URL``; otherwise,
   for a local address, a ``redis-server`` child (in ``./var/redis``, nothing
   persisted) or, when no binary is installed, fakeredis's TCP server in a
   thread of this process: a development fallback, said so loudly.
2. The Bitrix24 sandbox (``manage.py bitrix_sandbox``) when
   ``BITRIX_WEBHOOK_URL`` is empty; the children get its webhook URL.
3. The worker (``manage.py run_bitrix_worker``), restarted with backoff when it
   dies, and killed and restarted when it hangs: silent for 3 heartbeats
   (``devtools.heartbeat_watch``), with a log line saying so.
4. The web app: ``manage.py runserver --noreload --insecure``, not gunicorn: it
   serves the admin's static files whatever DEBUG says (``--insecure``), shows
   tracebacks with DEBUG (on by default here unless set) and logs one access line
   per request. Production runs gunicorn (docker-compose.yml). If it
   dies, everything stops.

Children run in their own process group, so Ctrl-C reaches only this process,
which then stops them in reverse order (SIGTERM, then SIGKILL after a grace
period). Their output is prefixed with their name.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.core.management import get_commands, load_command_class
from django.db import connections
from django.urls import NoReverseMatch, reverse

from bitrixsync.env_config import env_int, env_str
from bitrixsync.stack_env import live_stack_pid, remove_stack_env, stack_env_path, write_stack_env
from crmbridge.redis_io.connection import get_redis, sentinel_configured
from devtools.heartbeat_watch import HeartbeatWatch

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
DEFAULT_SANDBOX_CODE = "sandbox-secret-code"
STOP_GRACE_SECONDS = 10.0
# A worker that ran this long before dying starts again at the shortest backoff.
STABLE_RUN_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 30.0
# A hung worker gets this long to stop after SIGTERM before SIGKILL (a stopped process needs the SIGKILL).
HUNG_STOP_GRACE_SECONDS = 3.0


class StackError(RuntimeError):
    """The stack cannot start; the message says why and what to do."""


@dataclass
class ChildSpec:
    name: str
    args: list[str]
    # "restart": start again with backoff; "stop_all": stop the whole stack.
    on_exit: str = "restart"
    ready_port: int | None = None
    watch: HeartbeatWatch | None = None  # restart it when it is silent for 3 beats (the worker)


@dataclass
class Child:
    spec: ChildSpec
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    pump: threading.Thread | None = field(default=None, repr=False)


class Output:
    """Lines from several processes, each prefixed with its name, never interleaved mid-line."""

    COLORS = ("36", "33", "35", "32", "34", "31")

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.color = stream.isatty() and not os.environ.get("NO_COLOR")
        self.widths = 7

    def line(self, name: str, text: str) -> None:
        prefix = f"{name:>{self.widths}} |"
        if self.color:
            code = self.COLORS[sum(map(ord, name)) % len(self.COLORS)]
            prefix = f"\033[{code}m{prefix}\033[0m"
        with self.lock:
            self.stream.write(f"{prefix} {text}\n")
            self.stream.flush()

    def say(self, text: str) -> None:
        self.line("stack", text)

    def shout(self, text: str) -> None:
        bar = "!" * min(len(text), 78)
        for part in (bar, text, bar):
            self.line("stack", part)


class DevStack:
    def __init__(self, *, out: TextIO, var_dir: Path | None = None, python: str = sys.executable) -> None:
        self.out = Output(out)
        self.python = python
        self.manage = str(Path(settings.BASE_DIR) / "manage.py")
        # Data of the services run_stack starts (redis-server's dir, the sandbox's records).
        self.var_dir = var_dir or Path(settings.BASE_DIR) / "var"
        self.children: list[Child] = []
        self.child_env = dict(os.environ)
        self.stopping = False
        self.exit_code = 0
        self.fake_redis = None
        self.notes: dict[str, str] = {}
        self.web_port = env_int("WEB_PORT", 8000, minimum=1, maximum=65535)
        self.web_host = env_str("WEB_HOST", "") or "127.0.0.1"
        self.sandbox_port = env_int("BITRIX_SANDBOX_PORT", 8001, minimum=1, maximum=65535)
        self.sandbox_code = env_str("BITRIX_SANDBOX_CODE", "") or DEFAULT_SANDBOX_CODE
        # Where the other commands of this checkout find the stack's settings (bitrixsync/stack_env.py).
        self.stack_env_file = stack_env_path(Path(settings.BASE_DIR))

    # --- the whole run --------------------------------------------------------

    def run(self) -> int:
        self.install_signal_handlers()
        try:
            self.prepare()
            self.share_settings()
            self.print_banner()
            self.supervise()
        except StackError as exc:
            self.out.shout(f"Cannot start: {exc}")
            self.exit_code = 1
        finally:
            self.stop_all()
        return self.exit_code

    def prepare(self) -> None:
        other = live_stack_pid(self.stack_env_file)
        if other and other != os.getpid():
            raise StackError(f"run_stack (pid {other}) of this checkout is running ({self.stack_env_file}); stop it")
        self.child_env.setdefault("DEBUG", "true")
        self.child_env["PYTHONUNBUFFERED"] = "1"
        self.check_port_free(self.web_port, "WEB_PORT")
        self.ensure_redis()
        self.ensure_bitrix()
        self.create_dev_admin()
        self.start_worker()
        self.start(ChildSpec("web", self.runserver_args(), "stop_all", ready_port=self.web_port))

    def runserver_args(self) -> list[str]:
        """runserver on ``WEB_HOST``: loopback by default, since DEBUG shows tracebacks (``0.0.0.0`` opens it).

        ``--insecure``: static files (the admin's CSS) whatever DEBUG says (.env.example has DEBUG=false).
        """
        return self.manage_args("runserver", "--insecure", f"{self.web_host}:{self.web_port}", "--noreload")

    def install_signal_handlers(self) -> None:
        def request_stop(signum: int, frame: object) -> None:
            if self.stopping:  # a second Ctrl-C: do not wait for the grace period
                for child in self.children:
                    kill(child, signal.SIGKILL)
            self.stopping = True

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, request_stop)

    def supervise(self) -> None:
        while not self.stopping:
            for child in list(self.children):
                self.check_child(child)
            time.sleep(0.2)

    # --- Redis -----------------------------------------------------------------

    def ensure_redis(self) -> None:
        if sentinel_configured():  # never started here: the sentinels must name a master that answers
            self.notes["Redis"] = f"{sentinel_answers()} (Sentinel, already running)"
            return
        url = settings.REDIS_URL
        shown = describe_url(url)
        if redis_answers(url):
            self.notes["Redis"] = f"{shown} (already running)"
            return
        parts = urlsplit(url)
        if parts.scheme != "redis" or (parts.hostname or "") not in LOCAL_HOSTS:
            raise StackError(f"no Redis answers at {shown}; start it, or unset REDIS_URL/REDIS_HOST for a local one")
        port = parts.port or 6379
        if shutil.which("redis-server"):
            self.start_redis_server(port, parts.password or "")
            self.notes["Redis"] = f"{shown} (redis-server started by run_stack, nothing kept on disk)"
        else:
            self.start_fake_redis(port)
            self.notes["Redis"] = f"{shown} (fakeredis DEVELOPMENT FALLBACK: install redis-server)"
        wait_until(lambda: redis_answers(url), timeout=15, what=f"Redis at {shown}")

    def start_redis_server(self, port: int, password: str) -> None:
        data_dir = self.var_dir / "redis"
        data_dir.mkdir(parents=True, exist_ok=True)
        args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir)]
        args += ["--save", "", "--appendonly", "no"]
        if password:
            args += ["--requirepass", password]
        self.start(ChildSpec("redis", args, "stop_all"))

    def start_fake_redis(self, port: int) -> None:
        from fakeredis import TcpFakeServer

        self.out.shout(
            "No Redis answers and redis-server is not installed: starting fakeredis's TCP server "
            f"on 127.0.0.1:{port} as a DEVELOPMENT FALLBACK (in memory, slower, not for production). "
            "Install redis-server (apt-get install redis-server) for the real thing."
        )
        self.fake_redis = TcpFakeServer(("127.0.0.1", port), server_type="redis")
        threading.Thread(target=self.fake_redis.serve_forever, name="fakeredis", daemon=True).start()

    # --- Bitrix24 --------------------------------------------------------------

    def ensure_bitrix(self) -> None:
        from crmbridge.bitrix.webhook_url import redact_url

        if settings.BITRIX_WEBHOOK_URL:
            self.notes["Bitrix24"] = f"portal {redact_url(settings.BITRIX_WEBHOOK_URL)}"
            return
        if "bitrix_sandbox" not in get_commands():
            self.out.shout("BITRIX_WEBHOOK_URL is empty and `manage.py bitrix_sandbox` does not exist yet: no portal.")
            self.notes["Bitrix24"] = "none (set BITRIX_WEBHOOK_URL)"
            return
        self.check_port_free(self.sandbox_port, "BITRIX_SANDBOX_PORT")
        args = self.manage_args("bitrix_sandbox", "--port", str(self.sandbox_port))
        args += self.sandbox_options()
        self.child_env["BITRIX_SANDBOX_CODE"] = self.sandbox_code
        webhook = f"http://127.0.0.1:{self.sandbox_port}/rest/1/{self.sandbox_code}/"
        self.child_env["BITRIX_WEBHOOK_URL"] = webhook
        self.start(ChildSpec("sandbox", args, "restart", ready_port=self.sandbox_port))
        self.notes["Bitrix24"] = f"sandbox at http://127.0.0.1:{self.sandbox_port}/ (webhook {redact_url(webhook)})"

    def sandbox_options(self) -> list[str]:
        """Options the sandbox command offers (checked: it is written by another issue and may evolve)."""
        options = []
        # The code goes by environment, not argv: `ps` would show it to every local user.
        self.child_env["BITRIX_SANDBOX_CODE"] = self.sandbox_code
        if command_accepts("bitrix_sandbox", "--db"):
            # Kept across runs, like db.sqlite3: the Bitrix IDs stored there must keep existing here.
            self.var_dir.mkdir(parents=True, exist_ok=True)
            options += ["--db", str(self.var_dir / "sandbox.sqlite3")]
        inbound = inbound_path()
        if inbound and command_accepts("bitrix_sandbox", "--event-handler-url"):
            # The sandbox's outbound events (deal changed by a manager) come back to our endpoint.
            # The token goes by environment too (the sandbox reads BITRIX_INBOUND_TOKEN): never in argv or the log.
            self.child_env["BITRIX_INBOUND_TOKEN"] = settings.BITRIX_INBOUND_TOKEN or secrets.token_urlsafe(24)
            options.append(f"--event-handler-url=http://127.0.0.1:{self.web_port}{inbound}")
        return options

    def start_worker(self) -> None:
        if "run_bitrix_worker" not in get_commands():
            self.out.shout("`manage.py run_bitrix_worker` does not exist yet: the worker is not started.")
            self.notes["Worker"] = "NOT STARTED (command missing)"
            return
        interval = float(settings.BITRIX_WORKER.get("heartbeat_seconds", 5.0))
        watch = HeartbeatWatch(settings.REDIS_URL, interval)
        self.start(ChildSpec("worker", self.manage_args("run_bitrix_worker"), "restart", watch=watch))
        self.notes["Worker"] = "python manage.py run_bitrix_worker (restarted if it dies, or hangs: 3 beats silent)"

    def create_dev_admin(self) -> None:
        email, password = env_str("DEV_ADMIN_EMAIL", ""), env_str("DEV_ADMIN_PASSWORD", "")
        if not (email and password):
            self.notes["Admin user"] = (
                "python manage.py createsuperuser (or set DEV_ADMIN_EMAIL and DEV_ADMIN_PASSWORD)"
            )
            return
        ensure_superuser(email=email, password=password)
        connections.close_all()  # this process keeps no database connection open while it supervises
        self.notes["Admin user"] = f"{email} (from DEV_ADMIN_EMAIL / DEV_ADMIN_PASSWORD)"

    # --- children ----------------------------------------------------------------

    def manage_args(self, *args: str) -> list[str]:
        return [self.python, self.manage, *args]

    def start(self, spec: ChildSpec) -> Child:
        child = next((c for c in self.children if c.spec.name == spec.name), None) or Child(spec)
        if child not in self.children:
            self.children.append(child)
        child.process = subprocess.Popen(
            spec.args,
            env=self.child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
            process_group=0,  # Ctrl-C reaches run_stack only; it stops the children in order
        )
        self.out.say(f"started {spec.name} (pid {child.process.pid}): {self.describe(spec.args)}")
        child.started_at = time.monotonic()
        child.restart_at = None
        if spec.watch is not None:
            spec.watch.watch(child.process.pid)
        child.pump = threading.Thread(target=self.pump, args=(child,), daemon=True)
        child.pump.start()
        if spec.ready_port:
            self.wait_ready(child, spec.ready_port)
        return child

    def wait_ready(self, child: Child, port: int) -> None:
        """Wait until ``child`` listens on ``port``; fail at once if it exits first."""
        process = child.process
        assert process is not None
        wait_until(
            lambda: port_open(port) or process.poll() is not None or self.stopping,
            timeout=60,
            what=f"{child.spec.name} on port {port}",
        )
        if process.poll() is not None:
            raise StackError(f"{child.spec.name} exited during start-up (exit code {process.returncode}); see above")

    def describe(self, args: list[str]) -> str:
        if args[:2] == [self.python, self.manage]:
            args = ["python", "manage.py", *args[2:]]
        return " ".join(arg if arg else '""' for arg in args)

    def pump(self, child: Child) -> None:
        assert child.process and child.process.stdout
        for text in child.process.stdout:
            self.out.line(child.spec.name, text.rstrip("\n"))

    def check_child(self, child: Child) -> None:
        if child.process is None:
            if child.restart_at is not None and time.monotonic() >= child.restart_at:
                self.start(child.spec)
            return
        code = child.process.poll()
        if code is None:
            self.check_hung(child)
            return
        child.process = None
        if child.spec.on_exit == "stop_all":
            self.out.shout(f"{child.spec.name} EXITED UNEXPECTEDLY (exit code {code}): stopping everything.")
            self.exit_code, self.stopping = 1, True
        elif code == 0:
            self.out.shout(f"{child.spec.name} exited (exit code 0); not restarting it.")
        else:
            self.schedule_restart(child, code)

    def check_hung(self, child: Child) -> None:
        """A running child whose heartbeat went silent: kill it (SIGTERM, then SIGKILL) and start it again."""
        reason = child.spec.watch.hung() if child.spec.watch is not None else None
        if reason is None or child.process is None:
            return
        pid = child.process.pid
        self.out.shout(f"{child.spec.name} HUNG (pid {pid}): {reason}: killing it and starting it again.")
        stop(child, grace=HUNG_STOP_GRACE_SECONDS)
        child.process, child.restart_at = None, time.monotonic()

    def schedule_restart(self, child: Child, code: int) -> None:
        ran = time.monotonic() - child.started_at
        child.failures = 1 if ran >= STABLE_RUN_SECONDS else child.failures + 1
        delay = min(MAX_BACKOFF_SECONDS, 2.0 ** (child.failures - 1))
        child.restart_at = time.monotonic() + delay
        self.out.shout(f"{child.spec.name} DIED (exit code {code}) after {ran:.0f}s: restarting in {delay:.0f}s.")

    def share_settings(self) -> None:
        """Write the settings the children run with to ``.env.stack`` for commands run in another terminal."""
        if self.stack_env_file is None:
            self.notes["Other commands"] = "STACK_ENV_FILE is empty: no .env.stack written"
            return
        env = self.child_env
        shared = {
            "REDIS_URL": settings.REDIS_URL,
            "REDIS_SENTINELS": ",".join(f"{host}:{port}" for host, port in settings.REDIS_SENTINELS),
            "REDIS_SENTINEL_MASTER": settings.REDIS_SENTINEL_MASTER,
            # The stack's DEBUG (on unless set): without it and without SECRET_KEY, a command refuses to start.
            "DEBUG": env.get("DEBUG", ""),
            "BITRIX_WEBHOOK_URL": env.get("BITRIX_WEBHOOK_URL", ""),
            "DATABASE_URL": env.get("DATABASE_URL", ""),
            "WEB_PORT": str(self.web_port),
            "BITRIX_SANDBOX_PORT": str(self.sandbox_port) if "sandbox" in self.notes.get("Bitrix24", "") else "",
        }
        write_stack_env(self.stack_env_file, shared, pid=os.getpid())
        self.notes["Other commands"] = (
            f"manage.py bitrix_doctor, createsuperuser, run_bitrix_worker --once... in another terminal of "
            f"this checkout use this stack: its settings are in {self.stack_env_file} until Ctrl-C"
        )

    def stop_all(self) -> None:
        if self.stack_env_file is not None:
            remove_stack_env(self.stack_env_file, pid=os.getpid())
        for child in reversed(self.children):
            if child.process is not None and child.process.poll() is None:
                self.out.say(f"stopping {child.spec.name}")
                stop(child, grace=STOP_GRACE_SECONDS)
            if child.pump is not None:
                child.pump.join(timeout=2)
        if self.fake_redis is not None:
            self.fake_redis.shutdown()
            self.fake_redis.server_close()
        self.out.say("stopped.")

    # --- what the user sees -----------------------------------------------------------

    def print_banner(self) -> None:
        base = f"http://127.0.0.1:{self.web_port}"
        rows = {
            "Web app / API": f"{base}/orders, {base}/profile, {base}/services",
            "API docs": f"{base}/api/docs",
            "Admin": f"{base}/admin/",
            **self.notes,
        }
        width = max(map(len, rows))
        self.out.say("bitrixsync development stack")
        for label, value in rows.items():
            self.out.say(f"  {label:<{width}}  {value}")
        self.out.say(f"  {'Get a token':<{width}}  POST {base}/auth/register (see README.md, API)")
        self.out.say("Ctrl-C stops everything.")

    def check_port_free(self, port: int, variable: str) -> None:
        if port_open(port):
            raise StackError(f"port {port} is in use (another run_stack?); stop it or set {variable}")


# --- small helpers ---------------------------------------------------------------------


def sentinel_answers() -> str:
    """Ping the master through the project's factory; describe it, or raise ``StackError``."""
    where = f"master {settings.REDIS_SENTINEL_MASTER!r} via REDIS_SENTINELS"
    try:
        get_redis(socket_timeout=1, connect_timeout=1, retries=False, name="bitrixsync-run-stack").ping()
    except redis.exceptions.AuthenticationError:
        return where  # something answers; a wrong password is for the app to report
    except (redis.exceptions.RedisError, OSError) as exc:
        reason = type(exc).__name__
        raise StackError(f"no Redis {where} answers ({reason}); start the sentinels and the master") from None
    return where


def redis_answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.exceptions.AuthenticationError:
        return True  # something answers; a wrong password is for the app to report
    except (redis.exceptions.RedisError, OSError):
        return False


def describe_url(url: str) -> str:
    """The URL without its password."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":****@")
        return parts._replace(netloc=netloc).geturl()
    return url


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise StackError(f"{what} did not come up within {timeout:.0f}s")
        time.sleep(0.1)


def command_accepts(command: str, option: str) -> bool:
    """Whether ``manage.py <command>`` has ``option`` (the sandbox's options may evolve)."""
    try:
        parser = load_command_class(get_commands()[command], command).create_parser("manage.py", command)
    except Exception:  # a broken command module is reported when it runs
        return False
    return option in parser._option_string_actions


def inbound_path() -> str:
    """The path of the inbound Bitrix events endpoint, or "" while it is not routed."""
    try:
        return reverse("bitrix-webhook")
    except NoReverseMatch:
        return ""


def kill(child: Child, sig: int) -> None:
    if child.process is not None and child.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.process.pid, sig)


def stop(child: Child, *, grace: float) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left after ``grace`` seconds."""
    assert child.process is not None
    kill(child, signal.SIGTERM)
    try:
        child.process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        kill(child, signal.SIGKILL)
        child.process.wait(timeout=5)


def ensure_superuser(*, email: str, password: str) -> None:
    """Create the superuser ``email``, or make it one and reset its password (the environment is the truth)."""
    from accounts.models import User
    from accounts.services import derive_username

    user = User.objects.filter(email__iexact=email).order_by("id").first()
    if user is None:
        User.objects.create_superuser(username=derive_username(email), email=email, password=password)
        return
    user.is_staff = user.is_superuser = user.is_active = True
    user.set_password(password)
    user.save()
