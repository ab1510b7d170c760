#!/usr/bin/env bash
# One-time set-up of a fresh Debian machine that already has Rust (rustup) and Python 3.11+.
# Idempotent: every step checks before it installs. Called by `make setup` (and so by `make demo`,
# `make test`, `make bench`).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-python3}
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Debian packages: Erlang/OTP + rebar3 for the NIF and the HTTP front end; mochiweb only for the
# tests (bodypipe_http_SUITE decodes the demo's JSON answers with its mochijson2; the app does not
# use it); curl and wrk for the end-to-end tests and load runs, strace to count wake syscalls in
# the benchmarks; nginx for `make test-proxy` (which runs its own nginx from a temp dir on loopback
# ports; the package's own service, if its postinst starts one, is not used).
APT_PKGS=(erlang-nox erlang-dev erlang-common-test erlang-eunit rebar3 erlang-mochiweb curl wrk strace nginx)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Rust components used by `make test`.
if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi

# Every Python package goes into the project venv (.venv), made from the python3 the NIF embeds
# (native/build.sh builds against python3 on PATH), never into that interpreter itself:
# - the binding's build and test tools: maturin + zig for the portable wheel, auditwheel, mypy
#   (stubtest), pytest;
# - the demo's apps and the load comparison (Flask, gunicorn): `bodypipe serve --venv .venv`
#   (scripts/demo.sh, scripts/load.sh) and the Erlang tests (erlang/test.sh puts .venv/bin first
#   on PATH, where the embedded interpreter looks for its prefix) use the venv's site-packages;
# - the Erlang suites' apps (Starlette, FastAPI, python-multipart, Django, Falcon, Bottle, uvloop:
#   erlang/bodypipe_http/test/requirements.txt), in that same venv for the same reason.
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating the project venv .venv"
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r python/requirements-dev.txt
.venv/bin/python -m pip install -q --disable-pip-version-check -r demo/requirements.txt
.venv/bin/python -m pip install -q --disable-pip-version-check -r erlang/bodypipe_http/test/requirements.txt
# pyright fetches its own JavaScript package (npm registry) on first use: do it here, not mid-test.
.venv/bin/pyright --version >/dev/null
echo "setup: done"
