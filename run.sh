#!/usr/bin/env bash
# ./run.sh: install into .venv, migrate, and run the development stack
# (Redis if none answers, the Bitrix24 sandbox, the worker, the web app on :8000).
# Ctrl-C stops everything. Configuration: environment or .env (see .env.example).
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv

NAME=run.sh
# shellcheck source=scripts/venv.sh
. scripts/venv.sh

ensure_venv
install_requirements requirements.txt
# First start: a development .env (DEBUG=true, a generated SECRET_KEY), so that
# `python manage.py ...` in a second terminal runs too (devtools/dev_env.py).
"$VENV/bin/python" -m devtools.dev_env
# Development: DEBUG on unless set (without SECRET_KEY, DEBUG=false refuses to start).
export DEBUG=${DEBUG:-true}
# --skip-checks: a check that looks for Redis must not stop us before run_stack
# has started one; the web app runs every check when it starts.
"$VENV/bin/python" manage.py migrate --noinput --skip-checks
exec "$VENV/bin/python" manage.py run_stack
