# bodypipe: one entry point. `make demo` runs the main job, `make test` runs every test.
# Both start with `make setup`, which installs what a fresh Debian machine lacks.
SHELL := /bin/bash
PY ?= python3
# The project venv (scripts/setup.sh): maturin, zig, auditwheel, mypy, pytest.
VENV_PY ?= .venv/bin/python
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never
LOOM_MAX_PREEMPTIONS ?= 3
export LOOM_MAX_PREEMPTIONS
LOOM_RUSTFLAGS := $(RUSTFLAGS) --cfg bodypipe_loom
LOOM_TARGET ?= target/loom


.PHONY: selftest load slow-uploads stream-demo bench serve serve-build gil-latency
.PHONY: setup demo test fmt-check clippy test-rust test-loom test-python test-erlang test-proxy bench wheel python-install-bench

setup:
	@bash scripts/setup.sh

## The main job: an Erlang (bodypipe_http) HTTP server streaming request bodies into Python WSGI apps
## in the same VM through py_buffer, on 127.0.0.1:$${PORT:-8080}; prints how to try it.
demo: setup
	bash scripts/demo.sh

## `bodypipe serve` run from the repository (bin/bodypipe serve also works once built):
##   make serve APP=module:callable SERVE_ARGS="--python-path DIR --workers 4 --bind 0.0.0.0:8000"
APP ?= demo_app:application
SERVE_ARGS ?= --python-path demo
serve: setup serve-build
	$(PY) bin/bodypipe serve $(APP) $(SERVE_ARGS)

serve-build:
	cd erlang && rebar3 compile

## The latency of requests on new connections beside one holding the GIL in a long C call
## (bodypipe serve --workers 2, and gunicorn -w 2 when installed): p50/p99.
gil-latency: setup serve-build
	$(PY) scripts/gil_latency.py

## Uploads 1 GiB with curl (fixed-length and chunked) to a fresh demo server and checks the hash.
selftest: setup
	bash scripts/demo.sh --selftest

## wrk, one run, the same app: bodypipe serve vs gunicorn (sync, gthread) and granian, 64 KiB and
## 1 MiB POSTs and GETs; one table with the ratios (DURATION=10s per cell, CONNECTIONS=16).
load: setup
	bash scripts/load.sh

## Peak RSS of each bodypipe serve worker VM with 200 slow uploads in flight, against the bound
## the limits imply, in two cases: rings nearly empty, and rings full (the app stalled); SLOW_ARGS
## passes options (--case steady|full, --max-buffered, --chunk-size, ...).
slow-uploads: setup
	(cd erlang && rebar3 compile) >/tmp/bodypipe-slow-uploads-build.log 2>&1 || { cat /tmp/bodypipe-slow-uploads-build.log; exit 1; }
	$(PY) scripts/slow_uploads.py $(SLOW_ARGS)

## The core alone: a writer thread streaming 1 GiB to a reader thread, three modes.
stream-demo: setup
	$(CARGO) run -p bodypipe --release --example stream

## Every test: formatting, lints, Rust unit/property/stress tests (every crate, every feature),
## loom models, the wheel and pytest, Erlang CT, bodypipe serve behind nginx.
test: setup fmt-check clippy test-rust test-loom test-python test-erlang test-proxy

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTFLAGS="$(LOOM_RUSTFLAGS)" CARGO_TARGET_DIR=$(LOOM_TARGET) $(CARGO) clippy -p bodypipe --all-targets -- -D warnings
	$(CARGO) clippy -p bodypipe-python --all-targets --features bench -- -D warnings

## Every crate (core, HTTP parser, binding, NIF), every feature at once: no feature may turn
## loom on (it is a rustc cfg, see src/primitive/mod.rs), so this is ordinary code throughout.
## Release, to share the artifacts of the NIF build (rebar builds it release).
test-rust:
	$(CARGO) test --workspace --all-features --release

## The loom models, built in a target directory of their own so the cfg does not invalidate the
## ordinary build.
test-loom:
	RUSTFLAGS="$(LOOM_RUSTFLAGS)" CARGO_TARGET_DIR=$(LOOM_TARGET) $(CARGO) test -p bodypipe --release --test loom_models

## The Python binding. `make wheel` builds the wheel we ship: abi3 (CPython 3.11+), manylinux2014
## (linked against glibc 2.17 by zig, found as `python -m ziglang` in the project venv: the
## ziglang wheel puts no `zig` on PATH), stripped, into dist/. `make test-python` tests exactly that
## wheel in a fresh venv (scripts/test_wheel.sh); the crate's own Rust tests run in test-rust.
WHEEL_TARGET_DIR ?= target/wheel

wheel:
	rm -f dist/bodypipe-*.whl
	CARGO_TARGET_DIR=$(WHEEL_TARGET_DIR) CARGO_ZIGBUILD_PYTHON_PATH=$(abspath $(VENV_PY)) \
	  $(VENV_PY) -m maturin build --profile dist --strip --zig \
	  --compatibility manylinux2014 -m python/Cargo.toml -o dist

test-python: wheel
	bash scripts/test_wheel.sh

## The benchmarks' build of the binding: with the `bench` feature (bodypipe._bench_feed), into the
## project venv, never the wheel.
python-install-bench:
	@# The build backend runs the venv's `maturin` (no build isolation), so the venv's bin/ goes
	@# first on PATH (a fresh machine has no maturin anywhere else).
	PATH="$(abspath $(dir $(VENV_PY))):$$PATH" MATURIN_PEP517_ARGS="--features bench" \
	  $(VENV_PY) -m pip install -q --disable-pip-version-check --no-build-isolation ./python

## Debian's nginx (its own config in a temp dir, loopback ports, no service) in front of
## bodypipe serve: a 1 GiB upload, fixed-length and chunked, streamed through to the demo app with
## the sha256 checked, and proof that nginx did not spool it (scripts/proxy_test.sh).
test-proxy: setup serve-build
	bash scripts/proxy_test.sh

## The Erlang applications (erlang/bodypipe, erlang/bodypipe_http): rebar3 builds the NIF (cargo
## pre_hook) and runs both apps' Common Test suites, then the git_subdir consumer test
## (erlang/consumer_test/run.sh).
test-erlang:
	cd erlang && ./test.sh

## Benchmarks (issue 5): the Rust suite (one process, interleaved reps, medians), the criterion
## micro-benchmarks, the Python comparison and the Erlang one, then one merged table of ratios.
## Results: bench-results/bench.json (+ python.json, erlang.json; criterion under target/criterion).
## Knobs: BENCH_REPS (5), BENCH_SCALE (1.0; 0.05 for a smoke run), ERLANG_BENCH_MIB (1024).
BENCH_REPS ?= 5
BENCH_SCALE ?= 1.0
ERLANG_BENCH_MIB ?= 1024
export BENCH_REPS BENCH_SCALE

.PHONY: bench bench-rust bench-micro bench-python bench-erlang

bench: setup bench-rust bench-micro bench-python bench-erlang
	@$(PY) benches/report.py bench-results

bench-rust:
	@mkdir -p bench-results
	@# The wake-syscall counts read the syscalls:sys_enter_futex tracepoint, which needs tracefs.
	@mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
	$(CARGO) bench -p bodypipe --bench suite

bench-micro:
	$(CARGO) bench -p bodypipe --bench micro
	$(CARGO) bench -p bodypipe-http --bench parser

bench-python: python-install-bench
	$(VENV_PY) benches/python_bench.py --out bench-results/python.json

bench-erlang:
	@mkdir -p bench-results
	cd erlang && rebar3 compile
	escript erlang/bench/bench_json.escript bench-results/erlang.json $(ERLANG_BENCH_MIB) 3
