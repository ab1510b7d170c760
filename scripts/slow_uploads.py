#!/usr/bin/env python3
"""Peak RSS of each `bodypipe serve` worker VM with many slow uploads in flight.

Starts `bin/bodypipe serve demo_app:application --workers W` on 127.0.0.1, opens N
connections that each announce a large body (``Content-Length``, 64 MiB by default) to the
demo's ``/upload`` and then send it slowly (``--rate`` bytes per second each), and samples the
RSS of every worker VM (the supervisor's child processes, each a BEAM with its own embedded
CPython) while all N are in flight.

Two cases, both run by default (``--case both``):

- ``steady``: the app reads as fast as the bodies come, so each ring stays nearly empty; the
  growth per upload there is the fixed cost of a request in flight besides its ring (a Python
  thread, the app's 64 KiB read buffer, the connection process and its socket buffer), checked
  against ``--overhead``.
- ``full``: each client first sends ``--burst`` bytes (4 MiB) as fast as the socket takes them
  while the app sleeps ``--delay-ms`` (60 s) after every 64 KiB it reads
  (``/upload?delay_ms=D``), so each request's ring fills to ``max_buffered`` and stays there.

The bound per upload is derived from the limits (printed with its terms): the ring accepts a write
while fewer than ``max_buffered`` bytes are unread, so up to ``max_buffered + chunk_size`` unread
bytes; they span whole segments (``max_buffered / 4``, clamped to 4 KiB..1 MiB, as the core sizes
ring segments) with at most one partly read segment at the front and one partly filled at the
back, so two more segments; the connection holds the one socket read the full ring refused
(``chunk_size``); plus ``--overhead``. A worker's peak RSS must stay under its warmed-up idle RSS
plus uploads on it x that.

    python3 scripts/slow_uploads.py [--case both|steady|full] [--connections 200] [--hold 20]
                                    [--rate 4096] [--max-buffered 1M] [--chunk-size 64K]

Exit status 1 when not every upload was in flight during the sampling, when a worker went over
the bound, or when the steady case's growth per upload is over ``--overhead``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KIB = 1024
MIB = 1024 * 1024


def parse_size(text: str) -> int:
    units = {"K": KIB, "M": MIB, "G": 1024 * MIB}
    text = text.strip().upper()
    if text and text[-1] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def sockets(pid: int) -> int:
    """Open sockets of a process: connections (plus the listener and a few of the VM's own)."""
    n = 0
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            if os.readlink(fd).startswith("socket:"):
                n += 1
        except OSError:
            continue
    return n


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"slow_uploads: bodypipe serve exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"slow_uploads: nothing answers on port {port}")


def warm_upload(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Content-Length: 1048576\r\n\r\n" + b"z" * MIB)
        while s.recv(65536):
            pass


class Upload:
    """One connection sending a large body slowly; records whether the server answered early."""

    def __init__(self) -> None:
        self.connected = False
        self.answer = b""
        self.error: str | None = None

    async def run(self, port: int, length: int, burst: int, rate: int, delay_ms: int,
                  stop: asyncio.Event) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as exc:
            self.error = f"connect: {exc}"
            return
        query = f"?delay_ms={delay_ms}" if delay_ms else ""
        writer.write(f"POST /upload{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Content-Type: application/octet-stream\r\n"
                     f"Content-Length: {length}\r\n\r\n".encode())
        self.connected = True
        reading = asyncio.ensure_future(reader.read(4096))
        sent = 0
        try:
            piece = b"x" * (64 * KIB)
            while sent < burst and not stop.is_set():  # as fast as the socket takes it
                writer.write(piece[: burst - sent])
                sent += min(len(piece), burst - sent)
                drained = asyncio.ensure_future(writer.drain())
                done, _ = await asyncio.wait({drained, reading, asyncio.ensure_future(stop.wait())},
                                             return_when=asyncio.FIRST_COMPLETED)
                if reading in done or stop.is_set():
                    drained.cancel()
                    break
            step = max(1, rate // 4)  # four writes a second
            while not stop.is_set() and not reading.done() and sent + step < length:
                writer.write(b"y" * step)
                sent += step
                try:
                    await asyncio.wait_for(asyncio.shield(stop.wait()), 0.25)
                except asyncio.TimeoutError:
                    pass
            if reading.done():
                self.answer = reading.result() or b"(closed)"
        except (OSError, asyncio.CancelledError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            reading.cancel()
            writer.transport.abort()


async def main_async(args: argparse.Namespace, port: int, workers: list[int]) -> dict:
    stop = asyncio.Event()
    uploads = [Upload() for _ in range(args.connections)]
    tasks = [asyncio.ensure_future(u.run(port, args.length, args.burst, args.rate, args.delay_ms, stop))
             for u in uploads]
    peak = {w: 0 for w in workers}
    conns = {w: 0 for w in workers}
    in_flight_min = args.connections
    t0 = time.monotonic()
    # Let the connections open and the bursts land before sampling counts.
    await asyncio.sleep(args.ramp)
    while time.monotonic() - t0 < args.ramp + args.hold:
        for w in workers:
            peak[w] = max(peak[w], status_kib(w, "VmRSS"))
            conns[w] = max(conns[w], sockets(w))
        alive = sum(1 for u in uploads if u.connected and not u.answer and u.error is None)
        in_flight_min = min(in_flight_min, alive)
        await asyncio.sleep(0.25)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    answers = [u.answer.split(b"\r\n", 1)[0].decode("latin-1") for u in uploads if u.answer]
    errors = [u.error for u in uploads if u.error]
    return {"peak": peak, "conns": conns, "in_flight_min": in_flight_min,
            "answers": answers, "errors": errors}


# The core's ring segment size for a max_buffered (src/lib.rs: RING_SEGMENT_MIN/MAX, m / 4).
RING_SEGMENT_MIN = 4 * KIB
RING_SEGMENT_MAX = MIB


def ring_segment(max_buffered: int) -> int:
    return min(max(max_buffered // 4, RING_SEGMENT_MIN), RING_SEGMENT_MAX)


def bound_terms(max_buffered: int, chunk: int, overhead: int) -> list[tuple[str, int]]:
    """The bound per upload, term by term (see the module docs)."""
    seg = ring_segment(max_buffered)
    return [("max_buffered (unread bytes below the mark)", max_buffered),
            ("chunk_size (the last write accepted below it)", chunk),
            (f"2 x segment ({seg // KIB} KiB: a partly read one, a partly filled one)", 2 * seg),
            ("chunk_size (the socket read the full ring refused)", chunk),
            ("overhead (fixed cost of a request, --overhead)", overhead)]


def run_case(args: argparse.Namespace, name: str, burst: int, delay_ms: int) -> dict:
    """One `bodypipe serve`, the uploads of one case; RSS figures per worker."""
    port = free_port()
    cmd = [sys.executable, str(ROOT / "bin" / "bodypipe"), "serve", "demo_app:application",
           "--python-path", str(ROOT / "demo"), "--workers", str(args.workers),
           "--bind", f"127.0.0.1:{port}", "--venv", args.venv,
           "--max-buffered", args.max_buffered, "--chunk-size", args.chunk_size,
           "--body-timeout", str(int(args.ramp + args.hold + 30))]
    log = open(f"/tmp/bodypipe-slow-uploads-{os.getpid()}-{name}.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc)
        deadline = time.monotonic() + 60
        while len(workers := children(proc.pid)) < args.workers and time.monotonic() < deadline:
            time.sleep(0.2)
        # A few ordinary uploads first, so the idle figure includes a warmed-up interpreter.
        # Concurrent, so that every worker (the kernel picks which one accepts) gets some.
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda _: warm_upload(port), range(128)))
        idle = {w: status_kib(w, "VmRSS") for w in workers}
        idle_socks = {w: sockets(w) for w in workers}
        case = argparse.Namespace(**{**vars(args), "burst": burst, "delay_ms": delay_ms})
        res = asyncio.run(main_async(case, port, workers))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    res["idle"] = idle
    res["uploads"] = {w: max(0, res["conns"][w] - idle_socks[w]) for w in res["peak"]}
    return res


def report(args: argparse.Namespace, name: str, burst: int, delay_ms: int, res: dict,
           per_req_kib: float) -> tuple[bool, list[float]]:
    """Prints one case; whether it held, and the growth per upload of each warmed-up worker with
    uploads."""
    print(f"[{name}] {args.connections} uploads of {args.length // MIB} MiB announced, "
          f"burst {burst // KIB} KiB then {args.rate // KIB} KiB/s each, app delay {delay_ms} ms "
          f"per 64 KiB; bodypipe serve --workers {args.workers} --max-buffered {args.max_buffered} "
          f"--chunk-size {args.chunk_size}; sampled {args.hold:.0f} s; load average "
          f"{open('/proc/loadavg').read().split()[0]}")
    print(f"[{name}] in flight during the sampling (lowest count seen): "
          f"{res['in_flight_min']}/{args.connections}")
    print(f"{'worker pid':>10} {'idle RSS':>10} {'peak RSS':>10} {'growth':>9} {'uploads':>8} "
          f"{'bound':>10} {'growth/upload':>14} {'of bound':>9}")
    ok = res["in_flight_min"] == args.connections
    # A worker the kernel gave none of the warm-up connections has not run the app yet (its idle
    # figure is lower); the warmed-up worker's idle RSS is the base for every worker.
    idle, peak = res["idle"], res["peak"]
    warm = max(idle.values())
    per_upload = []
    for w in peak:
        n = res["uploads"][w]
        bound = warm + n * per_req_kib
        growth = peak[w] - idle[w]
        ok &= peak[w] <= bound
        share = ""
        if n:
            share = f"{100 * growth / n / per_req_kib:>8.0f}%"
            # A worker that got none of the warm-up uploads grows by its interpreter's warm-up
            # too (~20-30 MiB): its figure per upload is not the cost of an upload.
            if idle[w] >= 0.9 * warm:
                per_upload.append(growth / n)
            else:
                share += " (cold)"
        print(f"{w:>10} {idle[w] / KIB:>7.0f} MiB {peak[w] / KIB:>7.0f} MiB "
              f"{growth / KIB:>6.0f} MiB {n:>8} {bound / KIB:>7.0f} MiB "
              f"{growth / max(n, 1):>10.0f} KiB {share:>9}")
    print(f"[{name}] bound: warmed-up idle RSS ({warm / KIB:.0f} MiB) + uploads on the worker x "
          f"{per_req_kib:.0f} KiB; {'holds' if ok else 'NOT held'}")
    if res["answers"]:
        print(f"[{name}] answered before the end of the body: {len(res['answers'])} "
              f"({sorted(set(res['answers']))})")
    if res["errors"]:
        print(f"[{name}] client errors: {len(res['errors'])} ({sorted(set(res['errors']))[:3]})")
    return ok, per_upload


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", choices=("both", "steady", "full"), default="both")
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--length", type=parse_size, default=64 * MIB, help="announced Content-Length")
    ap.add_argument("--rate", type=parse_size, default=4 * KIB, help="bytes/s per upload after the burst")
    ap.add_argument("--burst", type=parse_size, default=4 * MIB,
                    help="the full case: bytes sent at once first")
    ap.add_argument("--delay-ms", type=int, default=60000,
                    help="the full case: the app sleeps this after each 64 KiB read")
    ap.add_argument("--max-buffered", default="1M", help="passed to bodypipe serve")
    ap.add_argument("--chunk-size", default="64K", help="passed to bodypipe serve")
    ap.add_argument("--overhead", type=parse_size, default=256 * KIB,
                    help="fixed cost per request in flight besides its ring (a Python thread, the "
                         "app's 64 KiB read buffer, the connection process and its socket "
                         "buffer): the steady case measures it and checks it against this")
    ap.add_argument("--ramp", type=float, default=5.0, help="seconds before sampling")
    ap.add_argument("--hold", type=float, default=20.0, help="seconds of sampling")
    ap.add_argument("--venv", default=str(ROOT / ".venv"))
    args = ap.parse_args()
    max_buffered, chunk = parse_size(args.max_buffered), parse_size(args.chunk_size)

    terms = bound_terms(max_buffered, chunk, args.overhead)
    per_req_kib = sum(v for _, v in terms) / KIB
    print("slow_uploads: bound per upload in flight = "
          + " + ".join(f"{v // KIB}" for _, v in terms) + f" = {per_req_kib:.0f} KiB:")
    for label, v in terms:
        print(f"  {v // KIB:>6} KiB  {label}")

    cases = [("steady", 0, 0), ("full", args.burst, args.delay_ms)]
    if args.case != "both":
        cases = [c for c in cases if c[0] == args.case]
    ok = True
    for name, burst, delay_ms in cases:
        res = run_case(args, name, burst, delay_ms)
        held, per_upload = report(args, name, burst, delay_ms, res, per_req_kib)
        ok &= held
        if name == "steady" and per_upload:
            fixed = max(per_upload)
            fits = fixed <= args.overhead / KIB
            ok &= fits
            print(f"[steady] fixed cost per upload (rings nearly empty): {fixed:.0f} KiB, "
                  f"{'within' if fits else 'OVER'} --overhead {args.overhead // KIB} KiB")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
