#!/usr/bin/env bash
# scripts/mutation.sh [MODULE...]: mutation testing (mutmut, pinned in requirements-dev.txt).
#
# MODULE is one of: inbound publishing bitrix worker orders accounts (default: all six,
# one after the other). Each runs in its own scratch copy of this checkout,
# var/mutation/<module>/ (git-ignored), with a [tool.mutmut] section written into the
# copy's pyproject.toml: which files to mutate and which fast tests cover them (no
# `slow` or `browser` tests: those start processes that would not see the mutant).
# Each module runs a fixed sample of its mutants (the share in spec() below; scripts/mutation_sample.py
# picks them), so that all six finish in well under an hour on 2 cores. The score over the sample is
# printed at the end and kept in var/mutation/<module>/score.txt.
#
# Not part of test.sh or CI (docs/mutation.md: scope, timing, scores, equivalent mutants).
# Environment: MUTATION_SAMPLE (the share of each module's mutants to run, in %, instead of
# spec()'s; 100 for all of them), MUTATION_CHILDREN (parallel test runs, default: two per core),
# MUTATION_TEST_TIMEOUT (seconds before a hung test fails, default 60), MUTATION_FRESH=1 (throw the
# module's earlier results away; by default a run resumes while the product code is unchanged,
# re-testing the sample's survivors against the tests as they are now; mutmut itself forgets its
# verdicts when the test timeout or a module's test list changes).
# Survivors: `cd var/mutation/<module> && ../../../.venv/bin/mutmut results`, then
# `mutmut show <name>` for the diff of one (var/mutation/<module>/sample.txt lists the sample).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
NAME=mutation.sh
# shellcheck source=scripts/venv.sh
. scripts/venv.sh

ALL="inbound publishing bitrix worker orders accounts"
# Two test runs per core: the tests mostly wait (on Redis, the sandbox, a worker's poll), so two
# per core go about twice as fast as one with the same verdicts (publishing's equivalent mutants
# survive with 6 on 2 cores since the harness fixes of 2026-12-06). Before those fixes more
# children made false kills (docs/mutation.md, "False kills").
CHILDREN=${MUTATION_CHILDREN:-$((2 * $(nproc)))}
# A mutant that makes a test hang (a worker that never runs out of work) fails that test after this
# many seconds (pytest-timeout) instead of waiting for mutmut's own limit: 15 times the tests' time,
# several minutes for the worker's. Passing tests take seconds; a test still running at 60 s is waiting
# for something that does not come (wait_for gives up at 60 s by default too).
TEST_TIMEOUT=${MUTATION_TEST_TIMEOUT:-60}
PRODUCT="crmbridge accounts orders bitrixsync devtools manage.py"

# module -> "share of its mutants run (%)|files to mutate (globs)|tests that cover them|tests left out"
# The shares keep all six within well under an hour on a 2-core machine (docs/mutation.md, "Scope"):
# a mutant of the worker costs up to a minute and a half of tests; one of orders a second or two.
# Left out: tests that measure time on a real worker. mutmut needs a clean pass first, and on a
# busy machine their timing fails; a failure under a mutant would count as a false kill.
spec() {
    case $1 in
        inbound) echo "40|crmbridge/inbound/*|tests/inbound" ;;
        publishing) echo "40|crmbridge/publishing/*|tests/publishing tests/worker/test_coalescing.py" ;;
        bitrix) echo "25|crmbridge/bitrix/*|tests/bitrix tests/worker/test_existing_customers.py tests/worker/test_deal_depth.py tests/diagnostics/test_doctor.py tests/diagnostics/test_doctor_portal_mapping.py" ;;
        worker) echo "8|crmbridge/worker/*|tests/worker tests/publishing/test_trimming.py tests/publishing/test_resync_existing_customers.py tests/diagnostics|tests/worker/test_record_pacing.py::test_a_long_burst_on_a_real_worker_costs_updates_at_doubling_intervals" ;;
        orders) echo "100|orders/services.py|tests/api/test_orders.py tests/api/test_order_validation.py tests/security/test_orders_hardening.py tests/security/test_roles.py" ;;
        accounts) echo "100|accounts/services.py|tests/api/test_account_services.py tests/api/test_auth.py tests/api/test_profile.py tests/security/test_email_uniqueness.py tests/security/test_tokens.py" ;;
        *) venv_fail "unknown module '$1' (one of: $ALL)" ;;
    esac
}

toml_list() { # words (globs are not expanded: set -f) -> "a", "b"
    local out="" word
    for word in "$@"; do out+="${out:+, }\"$word\""; done
    echo "$out"
}

run_module() {
    local module=$1 percent mutate tests skip test work deselect=""
    IFS='|' read -r percent mutate tests skip <<<"$(spec "$module")"
    percent=${MUTATION_SAMPLE:-$percent}
    [[ $percent =~ ^[0-9]+([.][0-9]+)?$ ]] || venv_fail "MUTATION_SAMPLE must be a share in %, like 10 or 2.5 (got '$percent')"
    for test in $skip; do deselect+=", \"--deselect\", \"$test\""; done
    work=$ROOT/var/mutation/$module
    [ "${MUTATION_FRESH:-}" = 1 ] && rm -rf "$work"
    rm -f "$work/score.txt"  # a failed run must not leave the last one's score looking current
    # What is mutated: the files, and the statements left alone. DEBUG lines are for developers; the
    # operator's log lines (the spec's contract) are INFO and up. Their text's mutants are noise.
    local mutated
    mutated="only_mutate = [$(set -f; toml_list $mutate)]
do_not_mutate_patterns = ['logger\\.debug\\(']"
    # mutmut re-creates only the files it mutates: after any change to the product code, its other
    # copies in mutants/ would be stale, and a change to what is mutated renumbers the mutants, so
    # either starts the module afresh. The files' contents (tracked and new), not git's index:
    # committing a change does not change the code.
    local code
    code=$( (git ls-files -z --cached --others --exclude-standard -- $PRODUCT | sort -z \
        | xargs -0 -r sh -c 'for f; do [ ! -e "$f" ] || sha256sum "$f"; done' hash; echo "$mutated") | sha256sum | cut -c1-16)
    [ -f "$work/.product-code" ] && [ "$(cat "$work/.product-code")" != "$code" ] && rm -rf "$work/mutants"
    mkdir -p "$work"
    echo "$code" >"$work/.product-code"
    # The checkout as it is (tracked and new files, not ignored ones) into the scratch copy. The copy
    # is emptied first (but for mutmut's results and this script's files), and so are mutmut's copies of
    # the tests: a file deleted or renamed since the last run must not be collected or mutated there.
    find "$work" -mindepth 1 -maxdepth 1 ! -name mutants ! -name .product-code ! -name '*.txt' ! -name '*.log' \
        -exec rm -rf {} +
    rm -rf "$work/mutants/tests"
    git ls-files -z --cached --others --exclude-standard | rsync -a --from0 --files-from=- --delete-missing-args ./ "$work/"
    cat >>"$work/pyproject.toml" <<EOF

[tool.mutmut]
source_paths = ["crmbridge", "accounts", "orders"]
$mutated
also_copy = ["bitrixsync", "devtools", "manage.py", ".env.example", "README.md", "docs", "requirements.txt"]
pytest_add_cli_args = ["-m", "not slow and not browser", "-p", "no:cacheprovider", "-p", "devtools.testing.fastest_first", "-q", "--timeout", "$TEST_TIMEOUT"$deselect]
pytest_add_cli_args_test_selection = [$(toml_list $tests)]
EOF
    printf '\n==> mutation testing: %s (%s; %s%% of its mutants; tests: %s)\n' "$module" "$mutate" "$percent" "$tests"
    local started=$SECONDS names=()
    # The sample's mutants not settled yet (never run, survived, no tests...): new tests may kill them now.
    (cd "$work" && "$VENV/bin/python" "$ROOT/scripts/mutation_sample.py" pick "$percent" >>mutmut-run.log 2>&1) \
        || venv_fail "mutmut could not create the mutants for $module (log: $work/mutmut-run.log)"
    mapfile -t names <"$work/to-run.txt"
    if [ "${#names[@]}" -gt 0 ]; then
        (cd "$work" && STACK_ENV_FILE="" "$VENV/bin/mutmut" run --max-children "$CHILDREN" "${names[@]}" >>mutmut-run.log 2>&1) || {
            tail -40 "$work/mutmut-run.log" >&2
            venv_fail "mutmut run failed for $module (log: $work/mutmut-run.log)"
        }
    fi
    (cd "$work" && "$VENV/bin/python" "$ROOT/scripts/mutation_sample.py" score "$module" $((SECONDS - started)) "$percent" | tee score.txt)
}

ensure_venv
install_requirements requirements-dev.txt
for module in "${@:-$ALL}"; do
    # shellcheck disable=SC2086
    for one in $module; do run_module "$one"; done
done
