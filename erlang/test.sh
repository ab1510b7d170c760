#!/usr/bin/env bash
# Runs the Common Test suites of the Erlang applications (bodypipe/test and bodypipe_http/test,
# through the umbrella in rebar.config), then the consumer test (consumer_test/run.sh: a
# throwaway rebar3 project depending on this repository's committed HEAD through git_subdir),
# and prints one closing line "erlang: N passed, N failed" (exit status non-zero on any failure).
# Arguments go to `rebar3 ct` (e.g. --suite bodypipe_http/test/bodypipe_http_SUITE); with any,
# the consumer test is left out.
# Needs: Debian's erlang (OTP 25+) and rebar3, cargo, git, and a CPython with a shared libpython
# (PYO3_PYTHON=/path/to/python3 to choose; default python3).
set -uo pipefail
cd "$(dirname "$0")"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The tests' Python packages (Flask) are in the project venv (scripts/setup.sh). The embedded
# interpreter takes its prefix from the python3 first on PATH (the venv's, with its pyvenv.cfg),
# so the tests run with the venv's bin/ first; the NIF is built before, with PATH as it was, so
# it links the same python3 as every other build (BODYPIPE_SKIP_NIF_BUILD: no rebuild in ct).
VENV=${BODYPIPE_TEST_VENV:-$(cd .. && pwd)/.venv}
if [ -x "$VENV/bin/python" ]; then
    rebar3 as test compile 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    if [ "$status" -eq 0 ]; then
        BODYPIPE_TEST_VENV=$VENV BODYPIPE_SKIP_NIF_BUILD=1 PATH="$VENV/bin:$PATH" \
            rebar3 ct "$@" 2>&1 | tee "$log"
        status=${PIPESTATUS[0]}
    fi
else
    echo "erlang/test.sh: no project venv at $VENV (make setup creates it)" | tee "$log"
    status=1
fi
out=$(sed 's/\x1b\[[0-9;]*m//g' "$log")
passed=0; failed=0
if [[ $out =~ All\ ([0-9]+)\ tests\ passed ]]; then
    passed=${BASH_REMATCH[1]}
else
    [[ $out =~ Passed\ ([0-9]+)\ tests ]] && passed=${BASH_REMATCH[1]}
    [[ $out =~ Failed\ ([0-9]+)\ tests ]] && failed=${BASH_REMATCH[1]}
fi
if [[ $status -ne 0 && $failed -eq 0 ]]; then failed=1; fi
if [[ $# -eq 0 ]]; then
    if ./consumer_test/run.sh; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1)); status=1
    fi
fi
echo "erlang: $passed passed, $failed failed"
exit "$status"
