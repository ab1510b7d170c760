#!/usr/bin/env python3
"""Latency of requests on new connections beside one request that holds the GIL.

Starts `bin/bodypipe serve` with --workers 2 (and, when gunicorn is importable, gunicorn -w 2
sync for comparison) on the test app erlang/bodypipe_http/test/bodypipe_serve_SUITE_data/serve_app.py, then:
  1. baseline: REQUESTS GETs, each on a new connection, one after the other;
  2. one request runs sum(range(SPIN_N)) (a single C call that never releases the GIL) and,
     while it runs, GETs on new connections one after the other until it ends (at most 20
     REQUESTS).
Prints p50 / p99 / max per server and phase, and how many of the requests were served by the
stalled worker. Usage: scripts/gil_latency.py [--requests 200] [--spin-n 1000000000]
"""

import argparse
import http.client
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
APP_DIR = os.path.join(ROOT, "erlang", "bodypipe_http", "test", "bodypipe_serve_SUITE_data")


def get(port, path, timeout=120):
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        return time.perf_counter() - t0, r.status, body
    finally:
        c.close()


def wait_up(port, proc, deadline=60):
    end = time.time() + deadline
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            get(port, "/pid", timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("server did not start")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def phase(port, n, stop=None):
    """n requests, one after the other; with `stop`, requests go on (up to 20 n) until it is set,
    so they cover the whole GIL-holding call."""
    lat, pids = [], []
    for i in range(n if stop is None else 20 * n):
        if stop is not None and stop.is_set():
            break
        t, status, body = get(port, "/pid")
        assert status == 200, status
        lat.append(t)
        pids.append(body.decode())
    return lat, pids


def measure(name, port, args, tmp):
    lat0, _ = phase(port, args.requests)
    marker = os.path.join(tmp, f"spin-{port}")
    done = threading.Event()
    spin = {}

    def spinner():
        spin["t"], _, spin["pid"] = get(port, f"/spin?n={args.spin_n}&marker={marker}", 600)
        done.set()

    th = threading.Thread(target=spinner)
    th.start()
    while not os.path.exists(marker):
        time.sleep(0.01)
    time.sleep(0.2)   # the request is in its C call
    lat1, pids = phase(port, args.requests, stop=done)
    th.join()
    stalled = spin["pid"].decode()
    on_stalled = sum(1 for p in pids if p == stalled)
    for label, lat in (("idle", lat0), ("beside the GIL holder", lat1)):
        print(f"{name:<28} {label:<22} n={len(lat):<4} p50 {statistics.median(lat) * 1000:8.1f} ms"
              f"   p99 {pct(lat, 99) * 1000:8.1f} ms   max {max(lat) * 1000:8.1f} ms")
    print(f"{name:<28} the GIL holder took {spin['t']:.1f} s; {on_stalled} of {len(pids)} requests "
          f"made meanwhile went to its worker")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--spin-n", type=int, default=10**9)
    ap.add_argument("--port", type=int, default=18090)
    ap.add_argument("--serve-arg", action="append", default=[],
                    help="passed to bodypipe serve (e.g. --serve-arg=--gil-stall-ms=1000000 "
                    "to see the server without its accept gate)")
    ap.add_argument("--no-gunicorn", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bodypipe-gil.")
    procs = []
    try:
        servers = [("bodypipe serve --workers 2", args.port,
                    [sys.executable, os.path.join(ROOT, "bin", "bodypipe"), "serve",
                     "serve_app:application", "--python-path", APP_DIR, "--workers", "2",
                     "--bind", f"127.0.0.1:{args.port}", *args.serve_arg])]
        try:
            if args.no_gunicorn:
                raise ImportError
            import gunicorn  # noqa: F401
            servers.append(("gunicorn -w 2 (sync)", args.port + 1,
                            [sys.executable, "-m", "gunicorn", "-w", "2", "-b",
                             f"127.0.0.1:{args.port + 1}", "--chdir", APP_DIR, "--timeout",
                             "600", "--log-level", "warning", "serve_app:application"]))
        except ImportError:
            print("(gunicorn not importable: bodypipe only)")
        for name, port, cmd in servers:
            p = subprocess.Popen(cmd, stderr=open(os.path.join(tmp, "log"), "a"))
            procs.append(p)
            wait_up(port, p)
            measure(name, port, args, tmp)
            p.send_signal(signal.SIGTERM)
            p.wait(60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
