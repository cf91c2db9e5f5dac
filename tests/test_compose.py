"""docker-compose.yml cannot be started here; this checks what it names exists.

Services and their health checks, every ``python manage.py <command>`` (a real
management command: ``run_bitrix_worker`` included, which the worker issue
provides), every variable given to the app (one settings reads), the Dockerfile.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands

from tests.test_settings import variables_read_by_settings

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = ("web", "worker")
# Production security settings of the hardening issue (issue 12 adds them to settings.py).
SECURITY_VARIABLES = (
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "SECURE_PROXY_SSL_HEADER",
)
PINNED = re.compile(r"^[a-z0-9/_.-]+:\d+\.\d+(\.\d+)?(-[a-z0-9.-]+)?$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def command_text(service: dict) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else command


def healthcheck_text(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def test_services(compose):
    assert set(compose["services"]) >= {"redis", "postgres", "web", "worker"}


def test_redis_persists_with_aof_and_has_a_healthcheck(compose):
    redis = compose["services"]["redis"]

    assert redis["image"].startswith("redis:7.")
    assert re.search(r"--appendonly\s+yes", command_text(redis))
    assert "redis-cli ping" in healthcheck_text(redis)
    assert any(volume.endswith(":/data") for volume in redis["volumes"])


def test_postgres_has_a_healthcheck_and_a_volume(compose):
    postgres = compose["services"]["postgres"]

    assert postgres["image"].startswith("postgres:16.")
    assert "pg_isready" in healthcheck_text(postgres)
    assert postgres["volumes"]


def test_web_migrates_then_runs_gunicorn_after_its_dependencies(compose):
    web = compose["services"]["web"]
    command = command_text(web)

    assert command.index("manage.py migrate") < command.index("gunicorn bitrixsync.wsgi")
    assert "0.0.0.0:8000" in command
    assert web["depends_on"] == {
        "redis": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }
    assert "8000/readyz" in healthcheck_text(web)  # ready: database, Redis, migrations (issue 21)


def test_worker(compose):
    worker = compose["services"]["worker"]

    assert command_text(worker) == "python manage.py run_bitrix_worker"
    assert worker["restart"] == "unless-stopped"
    assert worker["stop_grace_period"]
    assert worker["depends_on"]["web"] == {"condition": "service_healthy"}


def test_every_manage_py_command_exists(compose):
    named = set()
    for service in compose["services"].values():
        texts = [command_text(service)] + ([healthcheck_text(service)] if "healthcheck" in service else [])
        for text in texts:
            named |= set(re.findall(r"manage\.py\s+([a-z_]+)", text))

    assert named >= {"migrate", "run_bitrix_worker", "bitrix_doctor"}
    missing = named - set(get_commands())
    assert not missing, f"docker-compose.yml names management commands that do not exist: {sorted(missing)}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_environment_names_only_variables_settings_reads(compose, name):
    environment = compose["services"][name]["environment"]

    assert set(environment) <= variables_read_by_settings() | set(SECURITY_VARIABLES)
    assert environment["SECRET_KEY"].startswith("${SECRET_KEY:?")
    assert "@postgres:5432/" in environment["DATABASE_URL"]
    assert environment["REDIS_HOST"] == "redis"


def test_gunicorn_target_is_importable():
    from bitrixsync.wsgi import application

    assert callable(application)


def test_dockerfile():
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert re.search(r"^FROM python:3\.11\.\d+-slim-\w+$", dockerfile, re.M)  # pinned: patch release and base
    user = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert user and user[-1] not in ("root", "0")
    assert "collectstatic" in dockerfile
    assert "gunicorn" in dockerfile
    assert "requirements.txt" in dockerfile


# Issue 15: pinned images, one build, a worker health check, production security, operators' notes. -----


def test_third_party_images_are_pinned_to_a_release(compose):
    for name, service in compose["services"].items():
        if name in APP_SERVICES:
            continue
        assert PINNED.match(service["image"]), f"{name}: pin {service['image']} to a release (not a moving tag)"


def test_web_and_worker_share_one_build(compose):
    built = [name for name, service in compose["services"].items() if "build" in service]

    assert built == ["web"]
    assert compose["services"]["web"]["image"] == compose["services"]["worker"]["image"]
    assert not compose["services"]["web"]["image"].endswith(":latest")


def test_the_worker_has_a_health_check_that_does_not_call_the_portal(compose):
    check = compose["services"]["worker"]["healthcheck"]

    assert healthcheck_text(compose["services"]["worker"]).endswith("manage.py bitrix_doctor --skip-bitrix")
    assert check["interval"] and check["timeout"] and check["start_period"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_production_security_settings_are_set(compose, name):
    environment = compose["services"][name]["environment"]

    assert set(SECURITY_VARIABLES) <= set(environment)
    for variable in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
        assert environment[variable] == f"${{{variable}:-true}}"


def test_the_web_health_check_is_not_redirected_to_https(compose):
    assert "X-Forwarded-Proto" in healthcheck_text(compose["services"]["web"])


def test_readme_has_the_compose_version_and_the_worker_logs():
    readme = (ROOT / "README.md").read_text()
    compose_file = (ROOT / "docker-compose.yml").read_text()

    assert "docker compose logs worker" in readme
    assert re.search(r"Compose v2\.24", readme) and re.search(r"Compose v2\.24", compose_file)
