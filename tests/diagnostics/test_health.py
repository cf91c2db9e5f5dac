"""Issue 21 item 3: GET /healthz (the process answers) and GET /readyz (database, Redis, migrations)."""

from __future__ import annotations

import json

import pytest
from django.db.migrations.recorder import MigrationRecorder
from django.test import Client

from tests.diagnostics.conftest import WEBHOOK_CODE


def get(path: str, **headers):
    return Client().get(path, **headers)


@pytest.mark.parametrize("path", ["/healthz", "/healthz/"])
def test_healthz_answers_without_credentials_and_touches_nothing(path, private_redis):
    # No django_db mark: any query would raise. Redis is down: the process still answers.
    private_redis.stop()

    response = get(path)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/readyz", "/readyz/"])
def test_readyz_is_200_when_database_redis_and_migrations_are_ready(path):
    response = get(path)

    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok", "migrations": "ok"}}


@pytest.mark.django_db
def test_readyz_is_503_naming_redis_when_it_is_unreachable(private_redis, settings, secret_webhook):
    settings.REDIS_URL = private_redis.url.replace("redis://", f"redis://:{WEBHOOK_CODE}@")
    private_redis.stop()

    response = get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["checks"]["redis"].startswith("unreachable: ")
    assert body["checks"]["database"] == "ok"
    assert WEBHOOK_CODE not in response.content.decode()
    assert str(private_redis.port) not in response.content.decode()


@pytest.mark.django_db
def test_readyz_is_503_while_a_migration_is_not_applied():
    applied = MigrationRecorder.Migration.objects.filter(app="orders").order_by("-id").first()
    applied.delete()  # as before the migration Job has run (the test's transaction restores it)

    response = get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == "1 unapplied"


def test_readyz_is_503_when_the_database_cannot_be_used():
    # No django_db mark: pytest-django refuses every query, as an unreachable database would fail them.
    response = get("/readyz")

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"].startswith("unreachable: ")
    assert checks["migrations"] == "not checked: no database"


@pytest.mark.django_db
def test_probes_answer_get_only_in_json():
    assert Client().post("/healthz").status_code == 405
    assert json.loads(get("/healthz").content) == {"status": "ok"}
