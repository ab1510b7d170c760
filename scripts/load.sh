#!/usr/bin/env bash
# Load test on 127.0.0.1: wrk POSTs a 64 KiB body to the demo's /upload endpoint (hash + size),
# first against `bodypipe serve --workers $WORKERS` (bodypipe_http + py_buffer + the WSGI app in each
# worker VM), then against the
# same WSGI app under gunicorn (sync workers, then gthread workers), in one run on the same machine.
#   DURATION=10s CONNECTIONS=16 THREADS=2 WORKERS=2 BODY=65536 scripts/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-python3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-2}
BODY=${BODY:-65536}
BP_PORT=${BP_PORT:-18080}
GU_PORT=${GU_PORT:-18081}
GT_PORT=${GT_PORT:-18082}
command -v wrk >/dev/null || { echo "load: wrk is missing (apt-get install wrk)" >&2; exit 1; }
(cd erlang && rebar3 compile) >/tmp/bodypipe-load-build.log 2>&1 || { cat /tmp/bodypipe-load-build.log >&2; exit 1; }
# gunicorn and Flask are in the project venv (scripts/setup.sh); bodypipe's workers use it too.
VENV=${VENV:-$ROOT/.venv}
"$VENV/bin/python" -c 'import gunicorn, flask' 2>/dev/null || { echo "load: gunicorn/Flask are not in $VENV (run make setup)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/bodypipe-load.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT
cat >"$TMP/post.lua" <<LUA
wrk.method = "POST"
wrk.body = string.rep("x", $BODY)
wrk.headers["Content-Type"] = "application/octet-stream"
LUA

wait_port() {
  for _ in $(seq 100); do curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/" && return 0; sleep 0.2; done
  echo "load: nothing answers on port $1" >&2; return 1
}

"$PY" bin/bodypipe serve demo_app:application --python-path demo --workers "$WORKERS" \
  --bind "127.0.0.1:$BP_PORT" --venv "$VENV" >"$TMP/bodypipe.log" 2>&1 &
BP_PID=$!; PIDS+=("$BP_PID")
"$VENV/bin/python" -m gunicorn -w "$WORKERS" -k sync -b "127.0.0.1:$GU_PORT" --chdir "$ROOT/demo" \
  --log-level warning demo_app:application >"$TMP/gunicorn.log" 2>&1 &
PIDS+=("$!")
"$VENV/bin/python" -m gunicorn -w "$WORKERS" -k gthread --threads 8 -b "127.0.0.1:$GT_PORT" --chdir "$ROOT/demo" \
  --log-level warning demo_app:application >"$TMP/gthread.log" 2>&1 &
PIDS+=("$!")
wait_port "$BP_PORT"; wait_port "$GU_PORT"; wait_port "$GT_PORT"

# Both answer the same thing.
head -c "$BODY" /dev/zero | tr '\0' x >"$TMP/body"
want=$(sha256sum "$TMP/body" | cut -d' ' -f1)
for port in "$BP_PORT" "$GU_PORT" "$GT_PORT"; do
  curl -s --max-time 10 --data-binary @"$TMP/body" "http://127.0.0.1:$port/upload" | grep -q "$want" \
    || { echo "load: wrong answer from port $port" >&2; exit 1; }
done

run() {  # name port
  wrk -t"$THREADS" -c"$CONNECTIONS" -d1s -s "$TMP/post.lua" "http://127.0.0.1:$2/upload" >/dev/null 2>&1 || true
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --timeout 10s -s "$TMP/post.lua" \
    "http://127.0.0.1:$2/upload" >"$TMP/$1.wrk" 2>&1
}
run bodypipe "$BP_PORT"
# The largest peak RSS among bodypipe's worker VMs (the supervisor's children).
bp_hwm=$(for w in $(pgrep -P "$BP_PID"); do awk '/VmHWM/ {print $2}' "/proc/$w/status"; done | sort -n | tail -n 1)
run gunicorn "$GU_PORT"
run gthread "$GT_PORT"

"$PY" - "$TMP" "$BODY" "$DURATION" "$CONNECTIONS" "$THREADS" "$WORKERS" "$bp_hwm" <<'PYEOF'
import re, sys
tmp, body, duration, conns, threads, workers, hwm = sys.argv[1:]
body = int(body)
print(f"load: wrk -t{threads} -c{conns} -d{duration}, POST /upload with a {body // 1024} KiB body "
      f"(the app hashes it), 127.0.0.1, {open('/proc/cpuinfo').read().count('processor')} CPUs")
print(f"{'server':<34} {'requests/s':>11} {'body MB/s':>10} {'latency avg':>12} {'errors':>7}")
for name, label in (("bodypipe", f"bodypipe serve --workers {workers}"),
                    ("gunicorn", f"gunicorn -w {workers} (sync)"),
                    ("gthread", f"gunicorn -w {workers} --threads 8 (gthread)")):
    out = open(f"{tmp}/{name}.wrk").read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = re.search(r"Latency\s+(\S+)", out).group(1)
    errs = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs += int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errs += sum(map(int, m.groups())) if m else 0
    print(f"{label:<34} {rps:>11.0f} {rps * body / 1e6:>10.1f} {lat:>12} {errs:>7}")
print(f"bodypipe worker VM peak RSS (VmHWM, largest worker): {int(hwm) / 1024:.0f} MiB")
PYEOF
