#!/usr/bin/env bash
# ./run.sh: install into .venv, migrate, and run the development stack
# (Redis if none answers, the Bitrix24 sandbox, the worker, the web app on :8000).
# Ctrl-C stops everything. Configuration: environment or .env (see .env.example).
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv

find_python() {
    local candidate
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "run.sh: Python 3.11 or newer is required (python3.11 or python3 on PATH)." >&2
    return 1
}

ensure_venv() {
    if [ -x "$VENV/bin/python" ]; then
        return 0
    fi
    local python
    python=$(find_python)
    echo "run.sh: creating $VENV with $($python --version)"
    if ! "$python" -m venv "$VENV"; then
        echo "run.sh: could not create $VENV; on Debian/Ubuntu: apt-get install python3-venv" >&2
        exit 1
    fi
}

# Install a requirements file unless the same content is installed already
# (a stamp holds the hash of the files it names).
install_requirements() {
    local file=$1 stamp="$VENV/.installed-$1.sha256" hash
    hash=$(cat "$file" requirements.txt | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then
        return 0
    fi
    echo "run.sh: installing $file into $VENV (first run: a minute or two)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$file"
    echo "$hash" >"$stamp"
}

ensure_venv
install_requirements requirements.txt
# --skip-checks: a check that looks for Redis must not stop us before run_stack
# has started one; the web app runs every check when it starts.
"$VENV/bin/python" manage.py migrate --noinput --skip-checks
exec "$VENV/bin/python" manage.py run_stack
