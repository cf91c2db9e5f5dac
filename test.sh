#!/usr/bin/env bash
# ./test.sh [pytest args]: install the test dependencies into .venv, then
# ruff, the import contracts, the suite on SQLite, and at the same time the suite on PostgreSQL
# when one answers (TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test;
# TEST_PASSES=serial runs the two passes one after the other).
# The PostgreSQL pass leaves out tests marked `slow` (separate processes: worker,
# run_stack, settings loads), which the SQLite pass has run already.
# With CI=true, PostgreSQL and Chromium are required: missing means failure.
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
PG_URL=${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
IN_CI=false
if [ "${CI:-}" = "true" ]; then IN_CI=true; fi

say() { printf '\n==> %s\n' "$*"; }
fail() { printf '\ntest.sh: %s\n' "$*" >&2; exit 1; }

# Tests never read the .env.stack of a ./run.sh running in this checkout (bitrixsync/stack_env.py).
export STACK_ENV_FILE=""

NAME=test.sh
# shellcheck source=scripts/venv.sh
. scripts/venv.sh

APT_UPDATED=false
apt_install() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
    if [ "$APT_UPDATED" = false ]; then
        apt-get update -qq && APT_UPDATED=true
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

ensure_redis_server() {
    command -v redis-server >/dev/null 2>&1 && return 0
    say "redis-server is missing: installing it (the tests start private Redis servers)"
    apt_install redis-server || fail "redis-server is required: apt-get install redis-server (as root)"
}

# Browser tests use Debian's /usr/bin/chromium; without it they skip, except on CI.
ensure_chromium() {
    [ -x /usr/bin/chromium ] && return 0
    say "Chromium is missing: installing Debian's chromium for the browser tests"
    apt_install chromium && [ -x /usr/bin/chromium ] && return 0
    if [ "$IN_CI" = true ]; then
        fail "Chromium could not be installed and CI=true: the browser tests must run (apt-get install chromium)"
    fi
    echo "test.sh: WARNING: no Chromium: the browser tests will be SKIPPED (apt-get install chromium)." >&2
}

# Alert rule tests (tests/deploy/test_alerts.py) run promtool, from Debian's prometheus package;
# without it they skip, except on CI. kubectl (renders deploy/k8s with kustomize) is optional:
# without it only the base manifests are validated (tests/deploy/test_k8s.py says so).
ensure_promtool() {
    command -v promtool >/dev/null 2>&1 && return 0
    say "promtool is missing: installing Debian's prometheus package for the alert rule tests"
    apt_install --no-install-recommends prometheus && command -v promtool >/dev/null 2>&1 && return 0
    if [ "$IN_CI" = true ]; then
        fail "promtool could not be installed and CI=true: the alert rule tests must run (apt-get install prometheus)"
    fi
    echo "test.sh: WARNING: no promtool: the alert rule tests will be SKIPPED (apt-get install prometheus)." >&2
}

# pytest-django drops the test database at the end; a failed drop is only a warning, and the
# database stayed (issue 19 item 13, tests/db_sessions.py). Fail instead of leaving it.
test_database_left() {
    "$VENV/bin/python" - "$PG_URL" <<'PY'
import sys
from urllib.parse import urlsplit, urlunsplit

import psycopg

url = urlsplit(sys.argv[1])
name = "test_" + url.path.lstrip("/")
with psycopg.connect(urlunsplit(url._replace(path="/postgres")), connect_timeout=3) as conn:
    left = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
if left:
    print(f"test.sh: the PostgreSQL pass left the database {name} behind", file=sys.stderr)
sys.exit(1 if left else 0)
PY
}

# Asks the server's maintenance database: the one in PG_URL need not exist (Django creates test_<name>).
postgres_answers() {
    "$VENV/bin/python" - "$PG_URL" <<'PY' >/dev/null 2>&1
import sys
from urllib.parse import urlsplit, urlunsplit

import psycopg

psycopg.connect(urlunsplit(urlsplit(sys.argv[1])._replace(path="/postgres")), connect_timeout=3).close()
PY
}

# pytest's exit code 5 ("no tests ran") counts as a failure.
run_pytest() {
    local label=$1
    shift
    say "pytest on $label"
    local code=0
    "$VENV/bin/python" -m pytest "$@" || code=$?
    [ "$code" = 0 ] && return 0
    if [ "$code" = 5 ] && [ "${ONLY_SLOW_SELECTED_OK:-}" = true ]; then
        echo "test.sh: every selected test is marked slow and ran on SQLite already."
        return 0
    fi
    [ "$code" = 5 ] && fail "pytest on $label ran no tests"
    fail "pytest on $label failed (exit code $code)"
}

ensure_venv
install_requirements requirements-dev.txt
ensure_redis_server
ensure_chromium
ensure_promtool

say "ruff check"
"$VENV/bin/ruff" check . || fail "ruff check found problems"

say "import contracts (lint-imports: no import cycles; crmbridge never imports devtools)"
"$VENV/bin/lint-imports" --no-cache || fail "an import contract is broken (see pyproject.toml [tool.importlinter])"

# The two passes run side by side (TEST_PASSES=serial: one after the other): most tests wait on
# Redis, the sandbox or a worker, so on 2 cores together they take little longer than the SQLite
# pass alone (measured 2026-12-06: 379 s and 241 s side by side, ~7 minutes for all of .ci/run,
# where one after the other took ~11). They share nothing: each pytest
# starts its own Redis and sandbox on free ports; only the SQLite pass runs the `slow` tests.
# The PostgreSQL pass writes to var/test-postgres.log, shown when it ends.
PG_LOG=var/test-postgres.log
PG_PID=""
postgres_pass() {
    DATABASE_URL=$PG_URL ONLY_SLOW_SELECTED_OK=true run_pytest "PostgreSQL ($PG_URL), without the slow process tests" -m "not slow" "$@"
    test_database_left || fail "the test database was not dropped (a session still connected to it?)"
}
stop_postgres_pass() { # on a failed SQLite pass: its pytest too, not only the subshell
    [ -n "$PG_PID" ] || return 0
    pkill -TERM -P "$PG_PID" 2>/dev/null || true
    kill "$PG_PID" 2>/dev/null || true
}

if postgres_answers; then
    PG_RESULT="passed"
elif [ "$IN_CI" = true ]; then
    fail "PostgreSQL does not answer at $PG_URL and CI=true: the PostgreSQL pass is required"
else
    PG_RESULT="SKIPPED: no PostgreSQL answers at $PG_URL (set TEST_POSTGRES_URL)"
    echo "test.sh: WARNING: the PostgreSQL pass was skipped: nothing answers at $PG_URL." >&2
fi

if [ "$PG_RESULT" = passed ] && [ "${TEST_PASSES:-parallel}" != serial ]; then
    mkdir -p var
    say "pytest on PostgreSQL started beside the SQLite pass (its output: $PG_LOG)"
    (postgres_pass "$@") >"$PG_LOG" 2>&1 &
    PG_PID=$!
    trap stop_postgres_pass EXIT
fi

run_pytest SQLite "$@"

if [ -n "$PG_PID" ]; then
    code=0
    wait "$PG_PID" || code=$?
    PG_PID=""
    cat "$PG_LOG"
    [ "$code" = 0 ] || fail "the PostgreSQL pass failed (exit code $code; output above and in $PG_LOG)"
elif [ "$PG_RESULT" = passed ]; then
    postgres_pass "$@"
fi

say "Done: ruff passed; SQLite passed; PostgreSQL $PG_RESULT."
