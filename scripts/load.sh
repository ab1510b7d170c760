#!/usr/bin/env bash
# Load test on 127.0.0.1, one run, same machine, the same WSGI app (demo/demo_app.py) under
# `bodypipe serve --workers $WORKERS`, gunicorn -w $WORKERS (sync, then gthread) and
# granian --workers $WORKERS (WSGI). Three workloads, wrk with $CONNECTIONS connections each:
#   post  POST /upload with a $BODY-byte body (64 KiB; the app hashes it)
#   big   POST /upload with a $BIG_BODY-byte body (1 MiB)
#   get   GET / (a short text, no request body)
# It prints one table: requests/s per server and workload, and bodypipe's ratio to gthread and
# to granian. granian comes from demo/requirements-load.txt, installed here into the venv (only
# this target needs it; `make test` does not).
#   DURATION=10s CONNECTIONS=16 THREADS=2 WORKERS=2 BODY=65536 BIG_BODY=1048576 \
#   WORKLOADS="post big get" scripts/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-python3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-2}
BODY=${BODY:-65536}
BIG_BODY=${BIG_BODY:-1048576}
WORKLOADS=${WORKLOADS:-post big get}
BP_PORT=${BP_PORT:-18080}
GU_PORT=${GU_PORT:-18081}
GT_PORT=${GT_PORT:-18082}
GR_PORT=${GR_PORT:-18083}
command -v wrk >/dev/null || { echo "load: wrk is missing (apt-get install wrk)" >&2; exit 1; }
(cd erlang && rebar3 compile) >/tmp/bodypipe-load-build.log 2>&1 || { cat /tmp/bodypipe-load-build.log >&2; exit 1; }
# gunicorn and Flask are in the project venv (scripts/setup.sh); bodypipe's workers use it too.
VENV=${VENV:-$ROOT/.venv}
"$VENV/bin/python" -c 'import gunicorn, flask' 2>/dev/null || { echo "load: gunicorn/Flask are not in $VENV (run make setup)" >&2; exit 1; }
"$VENV/bin/python" -c 'import granian' 2>/dev/null \
  || "$VENV/bin/pip" install -q -r demo/requirements-load.txt \
  || { echo "load: could not install granian into $VENV (demo/requirements-load.txt)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/bodypipe-load.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT
for w in post:"$BODY" big:"$BIG_BODY"; do
  cat >"$TMP/${w%%:*}.lua" <<LUA
wrk.method = "POST"
wrk.body = string.rep("x", ${w#*:})
wrk.headers["Content-Type"] = "application/octet-stream"
LUA
done

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
"$VENV/bin/granian" --interface wsgi --workers "$WORKERS" --host 127.0.0.1 --port "$GR_PORT" \
  --working-dir "$ROOT/demo" --log-level warning demo_app:application >"$TMP/granian.log" 2>&1 &
PIDS+=("$!")
SERVERS="bodypipe:$BP_PORT gunicorn:$GU_PORT gthread:$GT_PORT granian:$GR_PORT"
for s in $SERVERS; do wait_port "${s#*:}"; done

# All answer the same thing.
for size in "$BODY" "$BIG_BODY"; do
  head -c "$size" /dev/zero | tr '\0' x >"$TMP/body"
  want=$(sha256sum "$TMP/body" | cut -d' ' -f1)
  for s in $SERVERS; do
    curl -s --max-time 10 --data-binary @"$TMP/body" "http://127.0.0.1:${s#*:}/upload" | grep -q "$want" \
      || { echo "load: wrong answer from ${s%%:*} (port ${s#*:})" >&2; exit 1; }
  done
done

run() {  # workload name port
  local url="http://127.0.0.1:$3/upload" script=(-s "$TMP/$1.lua")
  [ "$1" = get ] && { url="http://127.0.0.1:$3/"; script=(); }
  wrk -t"$THREADS" -c"$CONNECTIONS" -d1s "${script[@]}" "$url" >/dev/null 2>&1 || true
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --timeout 10s "${script[@]}" "$url" >"$TMP/$1-$2.wrk" 2>&1
}
bp_hwm=0
for w in $WORKLOADS; do
  for s in $SERVERS; do run "$w" "${s%%:*}" "${s#*:}"; done
  if [ "$w" = post ]; then  # the largest peak RSS among bodypipe's worker VMs (the supervisor's children)
    bp_hwm=$(for p in $(pgrep -P "$BP_PID"); do awk '/VmHWM/ {print $2}' "/proc/$p/status"; done | sort -n | tail -n 1)
  fi
done

"$PY" - "$TMP" "$BODY" "$BIG_BODY" "$DURATION" "$CONNECTIONS" "$THREADS" "$WORKERS" "${bp_hwm:-0}" "$WORKLOADS" <<'PYEOF'
import os, re, sys
tmp, body, big, duration, conns, threads, workers, hwm, workloads = sys.argv[1:]
body, big, workers = int(body), int(big), int(workers)
servers = (("bodypipe", f"bodypipe serve --workers {workers}"),
           ("gunicorn", f"gunicorn -w {workers} (sync)"),
           ("gthread", f"gunicorn -w {workers} --threads 8 (gthread)"),
           ("granian", f"granian --workers {workers} (WSGI)"))
labels = {"post": f"POST {body // 1024} KiB", "big": f"POST {big // 1024} KiB", "get": "GET /"}
sizes = {"post": body, "big": big, "get": 0}

def parse(path):
    out = open(path).read()
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m is None:
        return None, "-", out.strip().splitlines()[-1:] or ["no output"]
    lat = re.search(r"Latency\s+(\S+)", out).group(1)
    errs = 0
    m2 = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs += int(m2.group(1)) if m2 else 0
    m2 = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errs += sum(map(int, m2.groups())) if m2 else 0
    return float(m.group(1)), lat, errs

print(f"load: wrk -t{threads} -c{conns} -d{duration} per cell, 127.0.0.1, {os.cpu_count()} CPUs, "
      f"load average before the table {open('/proc/loadavg').read().split()[0]}; "
      "POST /upload (the app hashes the body), GET / (short text)")
print(f"{'workload':<14} {'server':<36} {'requests/s':>11} {'body MB/s':>10} {'latency avg':>12} {'errors':>7}")
ratios = []
for w in workloads.split():
    rps = {}
    for name, label in servers:
        r, lat, errs = parse(f"{tmp}/{w}-{name}.wrk")
        rps[name] = r
        shown = f"{r:>11.0f} {r * sizes[w] / 1e6:>10.1f}" if r is not None else f"{'failed':>11} {'-':>10}"
        print(f"{labels[w]:<14} {label:<36} {shown} {lat:>12} {errs!s:>7}")
    def ratio(other):
        return f"{rps['bodypipe'] / rps[other]:.2f}x" if rps["bodypipe"] and rps[other] else "-"
    ratios.append(f"{labels[w]:<14} bodypipe/sync {ratio('gunicorn'):>6}  bodypipe/gthread {ratio('gthread'):>6}"
                  f"  bodypipe/granian {ratio('granian'):>6}")
print("ratios (goal for POST 64 KiB: >= 1.5x gthread, >= 1.0x granian):")
print("\n".join(ratios))
if int(hwm):
    print(f"bodypipe worker VM peak RSS after the 64 KiB run (VmHWM, largest worker): {int(hwm) / 1024:.0f} MiB")
PYEOF
