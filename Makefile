# bodypipe: one entry point. `make demo` runs the main job, `make test` runs every test.
# Both start with `make setup`, which installs what a fresh Debian machine lacks.
SHELL := /bin/bash
PY ?= python3
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never
LOOM_MAX_PREEMPTIONS ?= 3
export LOOM_MAX_PREEMPTIONS


.PHONY: selftest load stream-demo
.PHONY: setup demo test fmt-check clippy test-rust test-loom test-python test-erlang bench python-install

setup:
	@bash scripts/setup.sh

## The main job: an Erlang (mochiweb) HTTP server streaming request bodies into Python WSGI apps
## in the same VM through py_buffer, on 127.0.0.1:$${PORT:-8080}; prints how to try it.
demo: setup
	bash scripts/demo.sh

## Uploads 1 GiB with curl (fixed-length and chunked) to a fresh demo server and checks the hash.
selftest: setup
	bash scripts/demo.sh --selftest

## wrk against the upload endpoint: bodypipe vs the same app under gunicorn, in one run.
load: setup
	bash scripts/load.sh

## The core alone: a writer thread streaming 1 GiB to a reader thread, three modes.
stream-demo: setup
	$(CARGO) run -p bodypipe --release --example stream

## Every test: formatting, lints, Rust unit/property/stress tests, loom models, pytest, Erlang CT.
test: setup fmt-check clippy test-rust test-loom test-python test-erlang

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p bodypipe --all-targets --features loom -- -D warnings

test-rust:
	$(CARGO) test -p bodypipe --release

test-loom:
	$(CARGO) test -p bodypipe --release --features loom --test loom_models

## The Python binding: build and install the wheel (maturin), then the pytest suite.
python-install:
	$(PY) -m pip install -q --disable-pip-version-check --no-build-isolation ./python \
	  || $(PY) -m pip install -q --disable-pip-version-check --no-build-isolation --break-system-packages ./python

test-python: python-install
	$(CARGO) test -p bodypipe-python
	$(PY) -m mypy.stubtest bodypipe --allowlist python/stubtest-allowlist.txt
	$(PY) -m pytest python/tests -q

## The Erlang binding: rebar3 builds the NIF (cargo pre_hook) and runs the Common Test suites.
test-erlang:
	cd erlang && ./test.sh
