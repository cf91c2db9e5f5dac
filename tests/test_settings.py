"""Settings from the environment: a bad value stops start-up naming the variable, never a secret.

Each case starts a fresh interpreter with the variable set, because settings
are read once per process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.testing.ports import free_port

# Each test loads the settings in a new interpreter, and none touches the database: run once (see test.sh).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cretWebhookCode42"
# Variables a developer's shell or .env could set, cleared so each case sees only its own.
CLEARED = (
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_PASSWORD",
    "REDIS_SENTINELS",
    "REDIS_SENTINEL_MASTER",
    "REDIS_SENTINEL_PASSWORD",
    "BITRIX_ENABLED",
    "BITRIX_WORKER_ENABLED",
    "BITRIX_WEBHOOK_URL",
    "DEBUG",
)


def run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    full_env.update(env, DJANGO_SETTINGS_MODULE="bitrixsync.settings", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=60)


def read_setting(name: str, **env: str) -> str:
    code = f"import django; django.setup(); from django.conf import settings; print(settings.{name})"
    result = run(["-c", code], **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REDIS_PORT", "abc"),
        ("REDIS_PORT", "70000"),
        ("BITRIX_ENABLED", "maybe"),
        ("BITRIX_WORKER_ENABLED", "2"),
        ("DEBUG", "yes please"),
        ("REDIS_URL", "http://x"),
        ("REDIS_URL", "redis://host:port/0"),
        ("REDIS_URL", "redis://host:6379/zero"),
        ("REDIS_SENTINELS", "sentinel-1"),
        ("REDIS_SENTINELS", "sentinel-1:26379,sentinel-2:port"),
        ("REDIS_SENTINELS", "sentinel-1:26379"),  # without REDIS_SENTINEL_MASTER
        ("REDIS_SENTINEL_MASTER", "mymaster"),  # without REDIS_SENTINELS
        ("DATABASE_URL", "nonsense://"),
        ("BITRIX_WORKER_BATCH_SIZE", "0"),
        ("BITRIX_WORKER_POLL_INTERVAL", "fast"),
        ("THROTTLE_LOGIN_RATE", "lots"),
        ("THROTTLE_REGISTER_RATE", "10/fortnight"),
        ("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto"),
        ("API_MAX_BODY_BYTES", "12"),
        ("BITRIX_DEAL_CATEGORY_MAP", "cnc-milling=three"),
        ("BITRIX_DEAL_CATEGORY_MAP", "cnc-milling"),
        ("BITRIX_DEAL_CATEGORY_DEFAULT", "-1"),
        ("BITRIX_PRODUCT_MAP", "welding=0"),
        ("BITRIX_DEAL_FIELDS", "material=MATERIAL"),
        ("BITRIX_CONTACT_FIELDS", "Phone Number=UF_CRM_PHONE"),
        ("BITRIX_STAGE_MAP_3", "new"),
        ("BITRIX_CONTACT_MATCH", "emails"),
        ("BITRIX_CONTACT_MATCH", "off,email"),
    ],
)
def test_invalid_value_stops_check_with_one_line_naming_the_variable(variable, value):
    result = run(["manage.py", "check"], **{variable: value})

    assert result.returncode != 0
    assert_one_line_naming(result.stderr, variable)


def assert_one_line_naming(stderr: str, variable: str) -> None:
    """One line (no traceback) that names the variable, says what is wrong and what is expected."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    (line,) = lines
    assert line.startswith(f"Configuration error: {variable} "), line
    assert "Traceback" not in stderr
    assert re.search(r"must|expected|unknown|invalid", line), line
    assert re.search(r"(e\.g\.|expected|must be|must look like|one of)", line), line


@pytest.mark.parametrize(
    "command",
    [
        ["manage.py", "runserver", "--noreload", "127.0.0.1:9"],
        ["manage.py", "bitrix_doctor"],
        ["manage.py", "run_bitrix_worker", "--once"],
        ["manage.py", "migrate"],
    ],
)
def test_every_manage_py_command_prints_one_line(command):
    result = run(command, REDIS_PORT="abc")

    assert result.returncode != 0
    assert_one_line_naming(result.stderr, "REDIS_PORT")


@pytest.mark.parametrize("module", ["bitrixsync.wsgi", "bitrixsync.asgi"])
def test_the_web_app_prints_one_line(module):
    result = run(["-c", f"import {module}"], BITRIX_ENABLED="maybe")

    assert result.returncode != 0
    assert_one_line_naming(result.stderr, "BITRIX_ENABLED")


def test_gunicorn_stops_with_the_one_line_instead_of_respawning_workers():
    gunicorn = Path(sys.executable).parent / "gunicorn"
    if not gunicorn.exists():
        pytest.skip("gunicorn is not installed in this environment")
    port = free_port()
    args = [str(gunicorn), "bitrixsync.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    full_env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    full_env.update(DATABASE_URL="nonsense://", PYTHONPATH=str(ROOT))

    result = subprocess.run(args, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=60)

    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("Configuration error:")]
    assert ours and "DATABASE_URL" in ours[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "url",
    [
        f"https://portal.example.com/rest/1/{SECRET}/extra/path/",
        f"ftp://portal.example.com/rest/1/{SECRET}/",
        f"https://portal.example.com/rest/one/{SECRET}/",
        f"https://portal.example.com/rest/1/{SECRET}/?x=1",
        f"https://portal.example.com:99999/rest/1/{SECRET}/",
        f"portal.example.com/rest/1/{SECRET}/",
    ],
)
def test_bad_webhook_url_is_named_but_its_code_never_shown(url):
    result = run(["manage.py", "check"], BITRIX_WEBHOOK_URL=url)

    assert result.returncode != 0
    assert "BITRIX_WEBHOOK_URL" in result.stderr
    assert SECRET not in result.stderr + result.stdout


def test_webhook_url_gets_its_trailing_slash():
    url = f"https://portal.example.com/rest/1/{SECRET}"

    assert read_setting("BITRIX_WEBHOOK_URL", BITRIX_WEBHOOK_URL=url) == url + "/"


@pytest.mark.parametrize(
    "url",
    ["rediss://:pa55@redis.example.com:6380/2", "redis://localhost:6379/15", "rediss://user:pw@managed.example.com/0"],
)
def test_redis_url_with_tls_and_database_number_is_accepted(url):
    assert read_setting("REDIS_URL", REDIS_URL=url) == url


def test_sentinels_are_read_as_host_port_pairs():
    raw = " s1:26379, [::1]:26380 ,s3:1"
    sentinels = read_setting("REDIS_SENTINELS", REDIS_SENTINELS=raw, REDIS_SENTINEL_MASTER="m")

    assert sentinels == "[('s1', 26379), ('::1', 26380), ('s3', 1)]"


def test_redis_url_is_built_from_host_port_and_password():
    url = read_setting("REDIS_URL", REDIS_HOST="cache", REDIS_PORT="6380", REDIS_PASSWORD="pw")

    assert url == "redis://:pw@cache:6380/0"


def test_defaults_work_with_no_configuration():
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "w = s.BITRIX_WORKER; print(json.dumps([w['max_retries'], w['batch_size'], w['poll_interval'], "
        "s.REDIS_STREAM_PREFIX, s.REDIS_URL, s.DATABASES['default']['ENGINE']]))"
    )
    result = run(["-c", code])

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        5,
        10,
        1.0,
        "bitrix:",
        "redis://127.0.0.1:6379/0",
        "django.db.backends.sqlite3",
    ]


def variables_read_by_settings() -> set[str]:
    """Every NAME in ``env_*("NAME"`` / ``database_config("NAME"`` of settings.py, plus REDIS_URL."""
    source = (ROOT / "bitrixsync" / "settings.py").read_text()
    names = set(re.findall(r"\b(?:env_\w+|database_config)\(\s*\"([A-Z][A-Z0-9_]*)\"", source))
    return names | {"REDIS_URL"}  # read inside env_config.redis_url()


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value
    return pairs


def test_env_example_documents_every_variable_settings_reads():
    missing = variables_read_by_settings() - set(env_example())

    assert not missing, f"add to .env.example: {sorted(missing)}"


def test_env_example_documents_the_dev_stack_variables():
    assert {"BITRIX_SANDBOX_PORT", "BITRIX_SANDBOX_CODE", "LOG_LEVEL"} <= set(env_example())


def test_env_example_as_it_is_is_a_valid_configuration():
    result = run(["-c", "import django; django.setup()"], **env_example())

    assert result.returncode == 0, result.stderr


def _stack_file(tmp_path: Path, pid: int, **values: str) -> Path:
    path = tmp_path / ".env.stack"
    path.write_text(f"RUN_STACK_PID={pid}\n" + "".join(f"{k}={v}\n" for k, v in values.items()))
    return path


def test_a_running_stacks_file_gives_its_settings_but_the_environment_wins(tmp_path):
    webhook = "http://127.0.0.1:8301/rest/1/sandbox-secret-code/"
    path = _stack_file(tmp_path, os.getpid(), BITRIX_WEBHOOK_URL=webhook, REDIS_URL="redis://127.0.0.1:6393/0")

    assert read_setting("BITRIX_WEBHOOK_URL", STACK_ENV_FILE=str(path)) == webhook
    assert read_setting("REDIS_URL", STACK_ENV_FILE=str(path)) == "redis://127.0.0.1:6393/0"
    assert (
        read_setting("REDIS_URL", STACK_ENV_FILE=str(path), REDIS_URL="redis://10.0.0.1:1/0") == "redis://10.0.0.1:1/0"
    )


def test_a_dead_stacks_file_is_ignored(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path = _stack_file(tmp_path, int(finished.stdout), BITRIX_WEBHOOK_URL="http://127.0.0.1:8301/rest/1/code/")

    assert read_setting("BITRIX_WEBHOOK_URL", STACK_ENV_FILE=str(path)) == ""
