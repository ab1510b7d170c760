#!/usr/bin/env bash
# Tests the wheel we ship, as a user gets it: the portable build from `make wheel`, checked for its
# platform tag and for debug info, installed into a fresh venv with nothing but the test
# requirements, then the stub check (mypy.stubtest) and the whole pytest suite run against it.
# Usage: scripts/test_wheel.sh [WHEEL]   (default: the one wheel in dist/)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV_PY=${VENV_PY:-.venv/bin/python}

shopt -s nullglob
if [ -n "${1:-}" ]; then wheels=("$1"); else wheels=(dist/bodypipe-*.whl); fi
if [ ${#wheels[@]} -ne 1 ]; then
    echo "test_wheel: expected exactly one wheel, found: ${wheels[*]:-none} (run make wheel)" >&2
    exit 1
fi
wheel=${wheels[0]}
echo "test_wheel: $wheel"

# 1. The tag: manylinux2014 (glibc 2.17), abi3 for CPython 3.11+, and auditwheel agrees.
case "$(basename "$wheel")" in
    *-cp311-abi3-*manylinux_2_17_x86_64*) ;;
    *) echo "test_wheel: unexpected tag in $(basename "$wheel") (want cp311-abi3 manylinux_2_17)" >&2; exit 1 ;;
esac
audit=$("$VENV_PY" -m auditwheel show "$wheel")
grep -q 'consistent with the following platform tag' <<<"$audit" && grep -q '"manylinux_2_17_x86_64"' <<<"$audit" || {
    echo "$audit" >&2; echo "test_wheel: auditwheel does not confirm manylinux_2_17_x86_64" >&2; exit 1; }

# 2. Stripped: no DWARF sections in the extension, and a size that says so (about 0.8 MB; the
#    unstripped release build is about 8 MB).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$VENV_PY" - "$wheel" "$tmp/ext.so" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = [n for n in z.namelist() if n.endswith(".so")]
    assert names == ["bodypipe/bodypipe.abi3.so"], names
    open(sys.argv[2], "wb").write(z.read(names[0]))
PY
if readelf -S --wide "$tmp/ext.so" | grep -qE '\.debug_|\.symtab'; then
    echo "test_wheel: the extension carries debug info or a symbol table (not stripped)" >&2; exit 1
fi
size=$(stat -c %s "$tmp/ext.so")
if [ "$size" -gt $((3 << 20)) ]; then
    echo "test_wheel: the extension is $size bytes; a stripped build is under 3 MiB" >&2; exit 1
fi
echo "test_wheel: tag manylinux_2_17_x86_64 (auditwheel), stripped, extension $size bytes"

# 2b. The metadata an index shows: a Markdown long description (python/README.md) whose every link
#     and image is absolute (a relative one resolves against the index's page and breaks there).
"$VENV_PY" - "$wheel" <<'PY'
import email.parser, re, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
    meta = email.parser.Parser().parsestr(z.read(name).decode())
assert meta.get("Description-Content-Type", "").startswith("text/markdown"), meta.get("Description-Content-Type")
body = meta.get_payload() or meta.get("Description", "")
assert "PyBuffer" in body, "the long description is not python/README.md"
targets = re.findall(r"\]\(\s*<?([^)\s>]+)", body) + re.findall(r"^\s*\[[^\]]+\]:\s*(\S+)", body, re.M)
targets += re.findall(r"""(?:src|href)=["']([^"']+)""", body)
relative = [t for t in targets if not re.match(r"(https?|mailto):", t)]
assert not relative, f"relative links in the long description: {relative}"
print(f"test_wheel: long description {len(body)} chars, {len(targets)} links, all absolute")
PY

# 3. A fresh venv with the wheel and the test requirements only, then stubtest and pytest.
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel" -r python/requirements-test.txt
# Run from outside the repository so `import bodypipe` can only find the installed wheel.
root=$(pwd)
cd "$tmp"
"$tmp/venv/bin/python" -c 'import bodypipe, sys; assert bodypipe.__file__.startswith(sys.prefix), bodypipe.__file__; assert not hasattr(bodypipe, "_bench_feed"), "benchmark helper shipped"'
"$tmp/venv/bin/python" -m mypy.stubtest bodypipe --allowlist "$root/python/stubtest-allowlist.txt"
# The shipped stub makes a PyBuffer a binary file to type checkers: a typed user program that
# passes it as IO[bytes], BinaryIO, io.RawIOBase, to BufferedReader/TextIOWrapper/json/shutil and
# as a wsgiref.types environ's input checks clean under both (pyright from the project venv,
# resolving imports in the fresh one).
cp "$root/python/typing_check/user_program.py" "$tmp/user_program.py"
"$tmp/venv/bin/python" -m mypy --strict --no-incremental "$tmp/user_program.py"
echo '{"typeCheckingMode": "strict", "include": ["user_program.py"]}' >"$tmp/pyrightconfig.json"
"$root/.venv/bin/pyright" -p "$tmp/pyrightconfig.json" --pythonpath "$tmp/venv/bin/python"
"$tmp/venv/bin/python" -m pytest "$root/python/tests" -q -p no:cacheprovider
