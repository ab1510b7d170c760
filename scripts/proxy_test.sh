#!/usr/bin/env bash
# bodypipe behind a real reverse proxy: Debian's nginx in front of `bin/bodypipe serve`, a 1 GiB
# upload streamed through it to the demo app twice (fixed-length, then chunked), the app's sha256
# checked against the sender's. `make test-proxy`.
#
# nginx runs from a config written into a temp dir (the one README "Deployment" shows: HTTP/1.1
# and keep-alive to the upstream, proxy_request_buffering off), as a foreground process with
# `-p DIR -c DIR/nginx.conf`, loopback ports picked free: no system config, no port 80, no service.
# That nginx streamed, not spooled, is checked causally (scripts/proxy_body.py stops sending at
# half the body until the server reports a quarter of it received), and nginx's client body temp
# dir must stay unused and its error log free of "buffered to a temporary file".
#
# Knobs: PROXY_TEST_SIZE (bytes, default 1 GiB), PROXY_TEST_DIRECT=1 (also one fixed-length
# upload straight to the server, for the MB/s without nginx), PROXY_TEST_GATE_TIMEOUT (s, 60),
# PROXY_TEST_REQUEST_BUFFERING=on (nginx spools: the test must then fail, which shows the streaming
# checks work), NGINX (default: nginx on PATH or /usr/sbin/nginx).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-python3}
VENV=${VENV:-$ROOT/.venv}
SIZE=${PROXY_TEST_SIZE:-$((1 << 30))}
GATE_TIMEOUT=${PROXY_TEST_GATE_TIMEOUT:-60}
REQUEST_BUFFERING=${PROXY_TEST_REQUEST_BUFFERING:-off}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}

fail() { echo "proxy-test: FAILED: $*"; exit 1; }
[ -x "$NGINX" ] || fail "no nginx at $NGINX (make setup installs Debian's nginx)"
"$VENV/bin/python" -c 'import flask' 2>/dev/null || fail "the project venv $VENV lacks the demo's packages (make setup)"

TMP=$(mktemp -d /tmp/bodypipe-proxy.XXXXXX)
# nginx started as root runs its workers as nobody, which must reach the temp paths below.
chmod 755 "$TMP"
SERVER="" NGINX_PID=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  # Only the two processes this script started, by pid; the server stops gracefully on TERM.
  if [ -n "$NGINX_PID" ]; then kill "$NGINX_PID" 2>/dev/null || true; wait "$NGINX_PID" 2>/dev/null || true; fi
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r APP_PORT NGX_PORT < <("$PY" -c 'import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))')
APP="http://127.0.0.1:$APP_PORT"
PROXY="http://127.0.0.1:$NGX_PORT"

# One worker: the admin endpoint answers for the worker it reaches, and the gate must see the
# upload's request.
"$PY" bin/bodypipe serve demo_app:application --python-path demo --venv "$VENV" \
  --bind "127.0.0.1:$APP_PORT" --workers 1 --admin --access-log "$TMP/app-access.log" \
  >"$TMP/server.log" 2>&1 &
SERVER=$!

mkdir -p "$TMP/logs"
cat >"$TMP/nginx.conf" <<EOF
# Written by scripts/proxy_test.sh; the nginx part of README "Deployment".
daemon off;
worker_processes 1;
pid $TMP/nginx.pid;
lock_file $TMP/nginx.lock;
error_log $TMP/logs/error.log info;
events { worker_connections 256; }
http {
    access_log $TMP/logs/access.log;
    client_body_temp_path $TMP/client_body;
    proxy_temp_path $TMP/proxy;
    fastcgi_temp_path $TMP/fastcgi;
    uwsgi_temp_path $TMP/uwsgi;
    scgi_temp_path $TMP/scgi;

    upstream bodypipe {
        server 127.0.0.1:$APP_PORT;
        keepalive 16;
        keepalive_timeout 4s;
    }
    server {
        listen 127.0.0.1:$NGX_PORT;
        client_max_body_size 0;
        location / {
            proxy_pass http://bodypipe;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_request_buffering $REQUEST_BUFFERING;
            proxy_buffering off;
            proxy_send_timeout 300s;
            proxy_read_timeout 300s;
        }
    }
}
EOF
"$NGINX" -t -q -p "$TMP" -e "$TMP/logs/error.log" -c "$TMP/nginx.conf" || { cat "$TMP/logs/error.log"; fail "nginx refused the config"; }
"$NGINX" -p "$TMP" -e "$TMP/logs/error.log" -c "$TMP/nginx.conf" &
NGINX_PID=$!

for _ in $(seq 300); do
  if curl -s -o /dev/null --max-time 1 "$APP/" && curl -s -o /dev/null --max-time 1 "$PROXY/"; then break; fi
  kill -0 "$SERVER" 2>/dev/null || { cat "$TMP/server.log"; fail "bodypipe serve exited"; }
  kill -0 "$NGINX_PID" 2>/dev/null || { cat "$TMP/logs/error.log"; fail "nginx exited"; }
  sleep 0.2
done
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$PROXY/") || true
[ "$code" = 200 ] || { cat "$TMP/server.log" "$TMP/logs/error.log"; fail "GET / through nginx: HTTP $code"; }
echo "proxy-test: nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///') on $PROXY -> bodypipe serve (1 worker) on $APP"

# upload NAME URL EXPECTED_FORWARDED_LENGTH CURL_ARGS...: one upload of SIZE bytes from
# proxy_body.py through curl -T -; checks HTTP 200, the app's size and sha256, and the length the
# server saw at the gate ("-": not checked; the direct run's gate proves nothing of course).
fails=0
upload() {
  local name=$1 url=$2 want_len=$3; shift 3
  local target="/upload?run=$name" gate_url="$APP/_bodypipe/requests"
  local start end resp="$TMP/$name.resp" sha="$TMP/$name.sha"
  start=$(date +%s.%N)
  if ! "$PY" scripts/proxy_body.py "$SIZE" "$gate_url" "$target" "$sha" "$GATE_TIMEOUT" 2>"$TMP/$name.gen" |
       curl -sS --max-time 300 -T - -X POST "$@" -H 'Content-Type: application/octet-stream' \
         -o "$resp" -w '%{http_code}' "$url$target" >"$TMP/$name.code" 2>"$TMP/$name.curl"; then
    cat "$TMP/$name.gen" "$TMP/$name.curl"
    echo "proxy-test: $name: the upload failed (above)"; fails=$((fails + 1)); return
  fi
  end=$(date +%s.%N)
  local code sent_sha fwd_len app_size app_sha
  code=$(cat "$TMP/$name.code")
  read -r sent_sha fwd_len <"$sha"
  read -r app_size app_sha < <("$PY" -c 'import json, sys
try:
    d = json.load(open(sys.argv[1])); print(d["size"], d["sha256"])
except Exception:
    print("? ?")' "$resp")
  "$PY" -c 'import sys; s, e, n, m, u = sys.argv[1:]; t = float(e) - float(s)
print(f"proxy-test: {m:<13} {int(n):,} bytes in {t:5.2f} s = {int(n) / t / 1e6:4.0f} MB/s ({u})")' \
    "$start" "$end" "$SIZE" "$name" "$url"
  sed 's/^proxy_body: /proxy-test:               /' "$TMP/$name.gen"
  echo "proxy-test:               sent sha256 $sent_sha"
  echo "proxy-test:               app  sha256 $app_sha (HTTP $code, $app_size bytes read by the app)"
  local ok=1
  [ "$code" = 200 ] && [ "$app_sha" = "$sent_sha" ] && [ "$app_size" = "$SIZE" ] || ok=0
  if [ "$want_len" != - ] && [ "$fwd_len" != "$want_len" ]; then
    echo "proxy-test:               nginx forwarded Content-Length $fwd_len, expected $want_len"; ok=0
  fi
  if [ "$ok" = 0 ]; then echo "proxy-test: $name: MISMATCH"; fails=$((fails + 1)); fi
}

upload fixed-length "$PROXY" "$SIZE" -H "Content-Length: $SIZE" -H 'Transfer-Encoding:'
upload chunked "$PROXY" null -H 'Transfer-Encoding: chunked'
if [ "${PROXY_TEST_DIRECT:-0}" = 1 ]; then
  upload direct "$APP" - -H "Content-Length: $SIZE" -H 'Transfer-Encoding:'
fi

# nginx spools to client_body_temp_path (and logs a warning) when it buffers a body; nothing may be
# there. The directory exists once nginx started (it creates its temp paths).
spooled=$(find "$TMP/client_body" -type f 2>/dev/null | wc -l)
if [ "$spooled" != 0 ] || grep -q 'buffered to a temporary file' "$TMP/logs/error.log"; then
  echo "proxy-test: nginx spooled a request body to $TMP/client_body"; fails=$((fails + 1))
fi
# Both uploads reached the app through nginx, over HTTP/1.1 (the app's access log).
through=$(grep -c '"POST /upload?run=\(fixed-length\|chunked\) HTTP/1.1" 200' "$TMP/app-access.log" || true)
if [ "$through" != 2 ]; then
  echo "proxy-test: the app's access log has $through of the 2 uploads as HTTP/1.1 200:"
  grep 'POST ' "$TMP/app-access.log" || true
  fails=$((fails + 1))
fi
if grep -q '\[\(error\|crit\|alert\|emerg\)\]' "$TMP/logs/error.log"; then
  echo "proxy-test: nginx logged errors:"; grep '\[\(error\|crit\|alert\|emerg\)\]' "$TMP/logs/error.log"; fails=$((fails + 1))
fi

if [ "$fails" = 0 ]; then
  echo "proxy-test: OK: 2 uploads of $SIZE bytes streamed through nginx (proxy_request_buffering off, HTTP/1.1 upstream), hashes match"
  exit 0
fi
sed -n 1,40p "$TMP/server.log"
fail "$fails check(s) failed (above)"
