"""Item 10: no public development key in production; `check --deploy` passes with the compose values."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    # PYTEST_VERSION would give the process the tests' key: these runs are production-like.
    base = {k: v for k, v in os.environ.items() if k != "PYTEST_VERSION" and not k.startswith(("SECURE_", "DEBUG"))}
    base.update({"SECRET_KEY": "", "DJANGO_BUILD_STEP": "", "ALLOWED_HOSTS": "sync.example.com", **env})
    base["DATABASE_URL"] = base.get("DATABASE_URL") or "sqlite:////tmp/bitrixsync-deploy-check.sqlite3"
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=base, capture_output=True, text=True, timeout=120
    )


def test_no_secret_key_without_debug_refuses_to_start():
    result = manage("check", DEBUG="false")

    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
    assert "django-insecure" not in result.stderr


def test_the_public_development_key_refuses_to_start_in_production():
    """Issue 19 item 8: it passed `check` with DEBUG off."""
    from bitrixsync.production import DEVELOPMENT_KEY

    result = manage("check", SECRET_KEY=DEVELOPMENT_KEY, DEBUG="false")

    assert result.returncode == 4, result.stdout + result.stderr
    assert result.stderr.startswith("Configuration error: SECRET_KEY") and len(result.stderr.splitlines()) == 1
    assert DEVELOPMENT_KEY not in result.stderr


@pytest.mark.parametrize(
    "key",
    [
        "django-insecure-" + "k7Qz!pW2" * 8,  # Django's insecure prefix, however long
        "Short-but-varied-key-9f8e7d",  # fewer than 50 characters
        "ab" * 40,  # fewer than 5 distinct characters
    ],
)
def test_every_key_the_deploy_check_calls_insecure_is_refused_without_debug(monkeypatch, key):
    from django.core.exceptions import ImproperlyConfigured

    from bitrixsync.production import secret_key

    monkeypatch.delenv("PYTEST_VERSION")  # as in production: no tests-only fallback

    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY") as raised:
        secret_key(key, debug=False)
    assert key not in str(raised.value)
    assert secret_key(key, debug=True) == key  # development keeps whatever it was given


def test_a_strong_key_is_used_as_it_is(monkeypatch):
    from bitrixsync.production import secret_key

    monkeypatch.delenv("PYTEST_VERSION")
    key = "q8Vd-3kLm_Zp0Rt7Yw2Xs9Nc4Hb6Jf1Ge5Ua8Ti3Oy7Pr0Ek2Wl"

    assert secret_key(key, debug=False) == key


def test_the_build_only_key_allows_collectstatic_and_nothing_else(tmp_path):
    assert manage("check", DEBUG="false", DJANGO_BUILD_STEP="collectstatic").returncode != 0

    result = manage("collectstatic", "--noinput", "--dry-run", DEBUG="false", DJANGO_BUILD_STEP="collectstatic")
    assert result.returncode == 0, result.stderr


def test_debug_on_keeps_the_development_key():
    assert manage("check", DEBUG="true").returncode == 0


def compose_production_env() -> dict[str, str]:
    """The web service's environment from docker-compose.yml, ``${VAR:-default}`` taken at its default."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    environment = compose["x-app"]["environment"]
    resolved = {}
    for name, value in environment.items():
        value = re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", str(value))
        resolved[name] = value
    return resolved


def test_check_deploy_passes_with_the_compose_values():
    env = compose_production_env()
    assert env.get("SECURE_SSL_REDIRECT") and env.get("SECURE_HSTS_SECONDS") and env.get("SECURE_PROXY_SSL_HEADER")
    env.pop("DATABASE_URL")  # the compose database is not here
    env.update(SECRET_KEY="x9" * 30 + "production-like-key-for-the-check", REDIS_HOST="127.0.0.1")

    result = manage("check", "--deploy", "--fail-level", "WARNING", **env)

    assert result.returncode == 0, result.stdout + result.stderr


def test_env_example_documents_the_production_switches():
    text = (ROOT / ".env.example").read_text()
    for name in ("SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_PROXY_SSL_HEADER", "SESSION_COOKIE_SECURE",
                 "CSRF_COOKIE_SECURE", "DJANGO_BUILD_STEP", "API_MAX_BODY_BYTES", "API_TOKEN_TTL_HOURS",
                 "THROTTLE_LOGIN_RATE", "WEB_HOST"):  # fmt: skip
        assert re.search(rf"^#? ?{name}=", text, re.M), name


def test_the_image_builds_with_the_build_only_key_not_a_fake_secret():
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert re.search(r"DJANGO_BUILD_STEP=collectstatic python manage.py collectstatic", dockerfile)
    assert "SECRET_KEY=" not in dockerfile
