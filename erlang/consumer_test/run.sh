#!/usr/bin/env bash
# The consumer test (issue 14): a throwaway rebar3 project outside the repository that depends on
# bodypipe and bodypipe_http the way erlang/README.md tells a user to, through git_subdir with a
# file:// URL of this repository at its committed HEAD, then `rebar3 compile` (which builds the
# NIF through the cargo pre-hook), and the checks in consumer_check.erl. Uncommitted changes are
# not part of what it builds. Prints one closing line "consumer: ok ..." or "consumer: FAILED ...".
#   BODYPIPE_CONSUMER_TARGET_DIR  cargo's target dir for the consumer's NIF build
#                                 (default: <repo>/target/consumer, kept so reruns are incremental)
#   BODYPIPE_CONSUMER_KEEP=1      keep the temporary project (its path is printed)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel)
REF=$(git -C "$REPO" rev-parse HEAD)
if ! git -C "$REPO" diff --quiet HEAD; then
    echo "consumer: note: the working tree has uncommitted changes; this test builds HEAD ($REF)"
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/bodypipe-consumer.XXXXXX")
if [ -n "${BODYPIPE_CONSUMER_KEEP:-}" ]; then
    echo "consumer: project in $TMP (kept)"
else
    trap 'rm -rf "$TMP"' EXIT
fi
export CARGO_TARGET_DIR=${BODYPIPE_CONSUMER_TARGET_DIR:-$REPO/target/consumer}

P=$TMP/consumer
mkdir -p "$P/src" "$P/priv"
cp "$HERE/consumer_check.erl" "$P/src/"
cp "$HERE/myapp.py" "$P/priv/"
cat >"$P/src/consumer.app.src" <<APP
{application, consumer, [
    {description, "bodypipe consumer test"},
    {vsn, "0.0.1"},
    {registered, []},
    {applications, [kernel, stdlib, bodypipe, bodypipe_http]},
    {env, []},
    {modules, []}
]}.
APP
cat >"$P/rebar.config" <<CONFIG
{erl_opts, [debug_info]}.
{deps, [
    {bodypipe, {git_subdir, "file://$REPO", {ref, "$REF"}, "erlang/bodypipe"}},
    {bodypipe_http, {git_subdir, "file://$REPO", {ref, "$REF"}, "erlang/bodypipe_http"}}
]}.
CONFIG

echo "consumer: rebar3 compile in $P (bodypipe at $REF via git_subdir, file://$REPO)"
if ! (cd "$P" && rebar3 compile) >"$TMP/compile.log" 2>&1; then
    cat "$TMP/compile.log" >&2
    echo "consumer: FAILED (rebar3 compile)"
    exit 1
fi
cd "$P"
# A git_subdir dependency's ebin is under its subdirectory (_build/default/lib/bodypipe/erlang/
# bodypipe/ebin, where rebar3 shell and releases find it; rebar3 3.19's `rebar3 path` omits it).
# A plain erl, not rebar3 shell, so that nothing is started before the checks.
EBINS=$(find _build/default/lib -type d -name ebin -not -path '*/target/*')
# shellcheck disable=SC2086 # one argument per directory
CONSUMER_PY_DIR=$P/priv PYTHONPATH=$P/priv erl -noshell -pa $EBINS -eval 'consumer_check:main()'
