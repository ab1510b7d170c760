#!/usr/bin/env bash
# bodypipe's main job, end to end: an Erlang HTTP server (bodypipe_http) streams request bodies,
# chunk by chunk as they arrive, through py_buffer into WSGI apps running in the same VM.
#
#   scripts/demo.sh              build, start the server on 127.0.0.1:${PORT:-8080}, print curl examples
#   scripts/demo.sh --selftest   build, start the server, upload ${SELFTEST_SIZE:-1G} of random data
#                                with curl twice (fixed length, then chunked), check the sha256 the
#                                app computed each time, print the figures; exit 0 (match) or 1
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PORT=${PORT:-8080}
PY=${PY:-python3}
MODE=serve
case "${1:-}" in
  --selftest) MODE=selftest ;;
  "") ;;
  *) echo "usage: $0 [--selftest]" >&2; exit 2 ;;
esac

echo "demo: building (rebar3 compile builds the NIF with cargo)"
(cd erlang && rebar3 compile) >/tmp/bodypipe-demo-build.log 2>&1 || { cat /tmp/bodypipe-demo-build.log >&2; exit 1; }
# The demo's packages (Flask) are in the project venv (scripts/setup.sh), which the workers'
# embedded interpreters use (--venv).
VENV=${VENV:-$ROOT/.venv}
"$VENV/bin/python" -c 'import flask' 2>/dev/null || { echo "demo: Flask is not in $VENV (run make setup)" >&2; exit 1; }

if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/"; then
  echo "demo: port $PORT is already in use (set PORT=...)" >&2; exit 1
fi
LOG=$(mktemp /tmp/bodypipe-demo.XXXXXX.log)
# `bodypipe serve` (bin/bodypipe): the demo app at /, the Flask app at /flask. The selftest reads
# one worker VM's peak RSS, so it runs one worker; the demo runs one per core.
if [ "$MODE" = selftest ]; then WORKERS=1; else WORKERS=${WORKERS:-$(nproc)}; fi
"$PY" bin/bodypipe serve demo_app:application --mount /flask=demo_flask:app --python-path demo \
  --bind "127.0.0.1:$PORT" --workers "$WORKERS" --venv "$VENV" >"$LOG" 2>&1 &
SERVER=$!
stop_server() { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; }
trap stop_server EXIT
trap 'exit 130' INT TERM   # Ctrl-C / kill: leave through the EXIT trap, which stops the server
for _ in $(seq 100); do
  curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/" && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$LOG" >&2; exit 1; }
  sleep 0.2
done
curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/" || { echo "demo: server did not start" >&2; cat "$LOG" >&2; exit 1; }
URL="http://127.0.0.1:$PORT"

if [ "$MODE" = selftest ]; then
  SIZE=${SELFTEST_SIZE:-1G}
  TMP=$(mktemp -d /tmp/bodypipe-selftest.XXXXXX)
  trap 'stop_server; rm -rf "$TMP"' EXIT
  echo "selftest: writing $SIZE of /dev/urandom to $TMP/body (hashed while written)"
  head -c "$SIZE" /dev/urandom | tee "$TMP/body" | sha256sum | cut -d' ' -f1 >"$TMP/client.sha"
  client_sha=$(cat "$TMP/client.sha")
  bytes=$(stat -c %s "$TMP/body")
  WORKER=$(pgrep -P "$SERVER" | head -n 1)
  hwm0=$(awk '/VmHWM/ {print $2}' "/proc/$WORKER/status")
  fail=0
  for mode in fixed-length chunked; do
    if [ "$mode" = fixed-length ]; then src=(-T "$TMP/body"); else src=(-T - -H 'Transfer-Encoding: chunked'); fi
    start=$(date +%s.%N)
    curl -sS --max-time 300 "${src[@]}" -H 'Content-Type: application/octet-stream' \
      -w '\n%{http_code}\n' "$URL/upload" <"$TMP/body" >"$TMP/resp" || true
    end=$(date +%s.%N)
    code=$(tail -n 1 "$TMP/resp")
    read -r server_size server_sha < <("$PY" -c 'import json,sys
try:
    d = json.loads(open(sys.argv[1]).readline()); print(d["size"], d["sha256"])
except Exception:
    print("? ?")' "$TMP/resp")
    "$PY" -c 'import sys; s, e, n, m = sys.argv[1:]; t = float(e) - float(s)
print(f"selftest: {m:<12} curl -T: {int(n):,} bytes in {t:.2f} s = {int(n) / t / 1e6:.0f} MB/s"
      " (curl -> bodypipe_http -> py_buffer -> readinto + sha256 in the app)")' "$start" "$end" "$bytes" "$mode"
    echo "selftest:              client sha256 $client_sha"
    echo "selftest:              server sha256 $server_sha (HTTP $code, $server_size bytes read by the app)"
    if [ "$code" != 200 ] || [ "$server_sha" != "$client_sha" ] || [ "$server_size" != "$bytes" ]; then fail=1; fi
  done
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$WORKER/status")
  echo "selftest: worker VM peak RSS (VmHWM) $((hwm / 1024)) MiB (before the uploads: $((hwm0 / 1024)) MiB)"
  if [ "$fail" = 0 ]; then echo "selftest: OK"; exit 0; fi
  echo "selftest: FAILED"; sed -n 1,40p "$LOG" >&2; exit 1
fi

cat <<EOT
bodypipe demo: \`bodypipe serve\` with $WORKERS worker VM(s), each an Erlang HTTP server
(bodypipe_http) streaming request bodies through py_buffer into WSGI apps in the same VM,
listening on $URL/  (server log: $LOG)

Try, from another terminal:
  curl $URL/
  head -c 100M /dev/urandom | curl -T - $URL/upload          # chunked: size + sha256
  head -c 100M /dev/urandom > /tmp/body && curl -T /tmp/body $URL/upload && sha256sum /tmp/body
  curl -T /tmp/body "$URL/upload?delay_ms=5"                 # a slow app: the server buffers <= 1 MiB
  printf 'one\\ntwo\\nthree\\n' | curl -T - $URL/echo          # line echo, full duplex
  curl -F name=value -F file=@/tmp/body $URL/form            # streaming multipart parser
  curl $URL/flask/  ;  curl -T /tmp/body $URL/flask/upload    # a Flask app, unchanged
  curl $URL/stats                                             # per worker VM
  scripts/demo.sh --selftest                                  # 1 GiB upload, hash checked
Serve your own app the same way: bin/bodypipe serve MODULE:CALLABLE --python-path DIR
(bin/bodypipe serve --help lists every option). Ctrl-C stops the server (gracefully).
EOT
wait "$SERVER"
