#!/bin/sh
# Builds the rustler NIF crate and installs it as priv/bodypipe_nif.so.
# Called by rebar3 (pre_hooks in rebar.config) with the app directory (erlang/bodypipe) as cwd.
#   BODYPIPE_NIF_PROFILE=P      the cargo profile: debug (no optimisations), release, or the
#                               default dist (release with fat LTO, as the wheel: Cargo.toml)
#   PYO3_PYTHON=/path/python3   the Python to embed (default: python3 on PATH)
#   CARGO_TARGET_DIR            honoured; default is the workspace's target/
#   BODYPIPE_SKIP_NIF_BUILD=1   use the priv/bodypipe_nif.so already there (prebuilt)
#
# The NIF crate is a member of the Cargo workspace at the repository root (two levels up) and
# depends on the core, HTTP and Python crates there by path. A rebar3 `git_subdir` dependency on
# erlang/bodypipe is a sparse checkout of the whole repository holding only that directory; then
# the rest of the tree (already in the clone's objects, nothing is downloaded) is checked out
# first, so cargo finds the workspace.
set -eu
APP_DIR=$(pwd)
WORKSPACE=$(cd "$APP_DIR/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$WORKSPACE/target}
PROFILE=${BODYPIPE_NIF_PROFILE:-dist}

if [ "${1:-}" = "clean" ]; then
    rm -f "$APP_DIR/priv/bodypipe_nif.so"
    exit 0
fi

if [ -n "${BODYPIPE_SKIP_NIF_BUILD:-}" ] && [ -f "$APP_DIR/priv/bodypipe_nif.so" ]; then
    exit 0
fi

if [ ! -f "$WORKSPACE/Cargo.toml" ]; then
    # Only a clone of this repository whose sparse checkout left the workspace out is widened;
    # anything else is a layout we do not know, reported as such.
    if [ "$(git -C "$WORKSPACE" rev-parse --show-toplevel 2>/dev/null)" = "$WORKSPACE" ] &&
        [ "$(git -C "$WORKSPACE" config --get core.sparsecheckout 2>/dev/null)" = "true" ]; then
        echo "native/build.sh: sparse checkout (rebar3 git_subdir): checking out the Cargo workspace" >&2
        GIT_DIR=$(git -C "$WORKSPACE" rev-parse --absolute-git-dir)
        printf '/*\n' >"$GIT_DIR/info/sparse-checkout"
        git -C "$WORKSPACE" read-tree -mu HEAD
    fi
    if [ ! -f "$WORKSPACE/Cargo.toml" ]; then
        echo "native/build.sh: no Cargo workspace at $WORKSPACE (the NIF crate needs the whole" \
            "bodypipe repository; depend on it with git_subdir ... \"erlang/bodypipe\")" >&2
        exit 1
    fi
fi

if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        PATH="$HOME/.cargo/bin:$PATH"
        export PATH
    else
        echo "native/build.sh: cargo not found (install Rust: https://rustup.rs)" >&2
        exit 1
    fi
fi

case "$PROFILE" in
debug | dev)
    cargo build --manifest-path "$APP_DIR/native/bodypipe_nif/Cargo.toml"
    PROFILE=debug
    ;;
*)
    cargo build --manifest-path "$APP_DIR/native/bodypipe_nif/Cargo.toml" --profile "$PROFILE"
    ;;
esac

mkdir -p "$APP_DIR/priv"
SRC="$TARGET_DIR/$PROFILE/libbodypipe_nif.so"
if [ ! -f "$SRC" ]; then
    echo "native/build.sh: $SRC not found after cargo build" >&2
    exit 1
fi
# Copy to a temporary name, then rename: a VM that has the old library mapped keeps its inode.
cp "$SRC" "$APP_DIR/priv/.bodypipe_nif.so.tmp"
mv -f "$APP_DIR/priv/.bodypipe_nif.so.tmp" "$APP_DIR/priv/bodypipe_nif.so"
