# bodypipe: one entry point. `make demo` runs the main job, `make test` runs every test.
# Both start with `make setup`, which installs what a fresh Debian machine lacks.
SHELL := /bin/bash
PY ?= python3
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never
LOOM_MAX_PREEMPTIONS ?= 3
export LOOM_MAX_PREEMPTIONS

.PHONY: setup demo test fmt-check clippy test-rust test-loom test-python test-erlang bench python-install

setup:
	@bash scripts/setup.sh

## The main job: stream a body from a producer to a reader and report what was measured.
demo: setup
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
