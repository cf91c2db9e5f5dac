"""Issue 19 item 9: the README's production step gives a secure production.

The step is read from the README ("Running in production": ``cp <example> .env``,
then set what its comment names), done in a temporary project directory beside a
copy of docker-compose.yml, and the web service's environment is rendered as
Compose would (``tests/compose_env.py``: interpolation with ``${X:-default}``,
env_file, ``environment:`` winning). ``manage.py check --deploy --fail-level WARNING``
then runs in a process with exactly that environment: SSL redirect, HSTS and
secure cookies on (no W004, W008, W012, W016), and one proxy in front.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.compose_env import ComposeError, interpolate, parse_dotenv, service_environment

ROOT = Path(__file__).resolve().parent.parent
# What the operator types into .env after copying it (the README's comment names these).
OPERATOR_VALUES = {
    "SECRET_KEY": "tV9-production-like-key-Qm3xL0pZr7WcY1sNfK4hJd8GbE2uAiO6vT5nRq",
    "ALLOWED_HOSTS": "sync.example.com",
    "BITRIX_WEBHOOK_URL": "https://example.bitrix24.com/rest/1/abcdefgh12345678/",
    "POSTGRES_PASSWORD": "a-long-database-password",
}


def production_step() -> tuple[str, list[str]]:
    """The example file the README's production step copies, and the variables its comment says to set."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Running in production", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"^cp (\S+) \.env\s+# set (.*)$", section, re.M)
    assert match, "the README's production step is `cp <example> .env   # set ...`"
    return match.group(1), re.findall(r"\b[A-Z][A-Z0-9_]+\b", match.group(2))


def set_values(path: Path, values: dict[str, str]) -> None:
    lines = path.read_text().splitlines()
    for name, value in values.items():
        pattern = re.compile(rf"^{name}=.*$")
        replaced = [pattern.sub(f"{name}={value}", line) for line in lines]
        lines = replaced if replaced != lines else [*lines, f"{name}={value}"]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def project(tmp_path) -> Path:
    """A project directory after the README's step: docker-compose.yml and the edited .env."""
    source, to_set = production_step()
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copy(ROOT / source, tmp_path / ".env")
    assert set(to_set) <= set(OPERATOR_VALUES) | {"CSRF_TRUSTED_ORIGINS", "BITRIX_INBOUND_TOKEN"}, to_set
    set_values(tmp_path / ".env", {name: OPERATOR_VALUES[name] for name in to_set if name in OPERATOR_VALUES})
    return tmp_path


def check_deploy(environment: dict[str, str]) -> subprocess.CompletedProcess:
    # Only the rendered environment (no PYTEST_VERSION, which would allow the tests' key), PATH to
    # find nothing in particular, and no .env.stack (the container has none).
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **environment, "STACK_ENV_FILE": ""}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


# -- the renderer follows Compose's rules ------------------------------------------------------


def test_interpolation_follows_composes_rules():
    variables = {"SET": "x", "EMPTY": ""}

    assert interpolate("${SET:-d} ${EMPTY:-d} ${UNSET:-d}", variables) == "x d d"
    assert interpolate("${SET-d} ${EMPTY-d} ${UNSET-d}", variables) == "x  d"
    assert interpolate("${UNSET:-${SET}}/$SET/$$SET", variables) == "x/x/$SET"
    assert interpolate("${SET:+alt}|${EMPTY:+alt}|${EMPTY+alt}", variables) == "alt||alt"
    with pytest.raises(ComposeError, match="EMPTY"):
        interpolate("${EMPTY:?set it}", variables)
    assert interpolate("${EMPTY?set it}", variables) == ""


def test_dotenv_parsing():
    parsed = parse_dotenv('# c\nA=1 # note\nexport B=\'x # y\'\nC="q\\"$A"\nD=\nE=a#b\n')

    assert parsed == {"A": "1", "B": "x # y", "C": 'q"1', "D": "", "E": "a#b"}


def test_environment_wins_over_env_file_which_fills_the_rest(tmp_path):
    (tmp_path / ".env").write_text("LEVEL=debug\nKEPT=from-file\n")
    (tmp_path / "docker-compose.yml").write_text(
        "services:\n  web:\n    env_file: [{path: .env, required: false}]\n"
        "    environment:\n      LEVEL: info\n      REDIRECT: ${REDIRECT:-true}\n      FROM_FILE: ${KEPT:-no}\n"
    )

    assert service_environment(tmp_path / "docker-compose.yml", "web") == {
        "LEVEL": "info", "KEPT": "from-file", "REDIRECT": "true", "FROM_FILE": "from-file",
    }  # fmt: skip


# -- the documented step -------------------------------------------------------------------------


def test_the_documented_step_without_the_secret_key_refuses_to_start(tmp_path):
    source, _ = production_step()
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copy(ROOT / source, tmp_path / ".env")

    with pytest.raises(ComposeError, match="SECRET_KEY"):
        service_environment(tmp_path / "docker-compose.yml", "web")


@pytest.mark.parametrize("service", ["web", "worker"])
def test_the_documented_step_keeps_production_security_on(project, service):
    env = service_environment(project / "docker-compose.yml", service)

    assert env["DEBUG"] == "false"
    assert env["SECRET_KEY"] == OPERATOR_VALUES["SECRET_KEY"]
    switches = ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_INCLUDE_SUBDOMAINS")
    for name in switches:
        assert env[name] == "true", name
    assert int(env["SECURE_HSTS_SECONDS"]) >= 31536000
    assert env["SECURE_PROXY_SSL_HEADER"] == "HTTP_X_FORWARDED_PROTO,https"
    # Behind the TLS proxy: its address is not the client's (one rate-limit bucket for everyone).
    assert env["THROTTLE_NUM_PROXIES"] == "1"
    assert "sync.example.com" in env["ALLOWED_HOSTS"].split(",")


@pytest.mark.slow
def test_check_deploy_passes_with_the_environment_of_the_documented_step(project):
    env = service_environment(project / "docker-compose.yml", "web")

    result = check_deploy(env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
