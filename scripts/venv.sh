# Sourced by run.sh and test.sh: the .venv they share, and installs that run only
# when a requirements file changed. Expects VENV and a NAME for messages.

venv_say() { printf '%s: %s\n' "$NAME" "$*"; }
venv_fail() { printf '%s: %s\n' "$NAME" "$*" >&2; exit 1; }

find_python() {
    local candidate
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    venv_fail "Python 3.11 or newer is required (python3.11 or python3 on PATH)."
}

ensure_venv() {
    [ -x "$VENV/bin/python" ] && return 0
    local python
    python=$(find_python)
    venv_say "creating $VENV with $($python --version)"
    "$python" -m venv "$VENV" || venv_fail "could not create $VENV; on Debian/Ubuntu: apt-get install python3-venv"
}

# A stamp holds the hash of the file (and requirements.txt, which it includes).
install_requirements() {
    local file=$1 stamp="$VENV/.installed-$1.sha256" hash
    hash=$(cat "$file" requirements.txt | sha256sum | cut -d' ' -f1)
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ] && return 0
    venv_say "installing $file into $VENV (first run: a minute or two)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$file"
    echo "$hash" >"$stamp"
}
