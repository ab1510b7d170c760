#!/usr/bin/env python3
"""Python side of the issue-5 benchmarks: bodypipe's PyBuffer against the Python baselines.

Run by `make bench` after the Rust suite (or alone: `python3 benches/python_bench.py`).
Every comparison runs in this one process, interleaved round-robin over `--reps` repetitions;
medians are reported, and the ratios with their targets are written to `bench-results/python.json`
(merged into the one table by `benches/report.py`).

Baselines: `io.BytesIO` holding the whole body (the in-memory best case), an `os.pipe` fed by a
writer thread, a `queue.Queue` of `bytes` chunks.

bodypipe workloads: `read(65536)` streamed from a Python writer thread and from a writer that never
holds the GIL (`bodypipe._bench_feed`, see below), in unbounded and ring mode; `readinto`;
`readline`/iteration over 1 M lines; `find` of a multipart boundary in 100 MiB; memoryview export.

The no-GIL writer uses a benchmark-only helper that the shipped wheel does not contain; `make
bench` installs a build with the binding's `bench` feature (python/src/bench.rs):

    bodypipe._bench_feed(writer: bodypipe.Writer, total: int, chunk: int) -> None

It takes the core writer out of `writer` (which then reports `closed`), starts a Rust thread that
writes `total` bytes in `chunk`-byte writes of a prepared pattern (in ring mode, waiting with
`wait_writable` whenever a write is `Full`), closes the body, and returns at once. The thread never
touches the GIL. Without it (a plain `pip install ./python`), those rows are reported as missing.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import queue
import statistics
import sys
import threading
import time

try:
    import bodypipe
except ImportError:  # the binding is built by `pip install ./python`
    bodypipe = None

KIB = 1 << 10
MIB = 1 << 20
CHUNK = 64 * KIB
READ = 65536
RING = 1 * MIB


def make_pattern(n: int) -> bytes:
    # Pseudo-random bytes without b"\n", made once; streams write slices of it.
    return bytes((i * 2654435761 >> 13) & 0xFF | 0x80 for i in range(n))


PATTERN = make_pattern(MIB + CHUNK)


def chunks(total: int, chunk: int):
    mv = memoryview(PATTERN)
    off = 0
    sent = 0
    while sent < total:
        n = min(chunk, total - sent)
        yield mv[off : off + n]
        off = (off + n) % MIB
        sent += n


def drain_read(f, size=READ) -> int:
    got = 0
    read = f.read
    while True:
        b = read(size)
        if not b:
            return got
        got += len(b)


# --- streaming baselines --------------------------------------------------------------------


def s_bytesio(total: int) -> float:
    body = PATTERN[:MIB] * (total // MIB)
    bio = io.BytesIO(body)
    t = time.perf_counter()
    got = drain_read(bio)
    dt = time.perf_counter() - t
    assert got == len(body)
    return dt


def s_os_pipe(total: int) -> float:
    r, w = os.pipe()

    def writer():
        for c in chunks(total, CHUNK):
            while c:
                n = os.write(w, c)
                c = c[n:]
        os.close(w)

    t = time.perf_counter()
    th = threading.Thread(target=writer)
    th.start()
    got = 0
    while True:
        b = os.read(r, READ)
        if not b:
            break
        got += len(b)
    dt = time.perf_counter() - t
    th.join()
    os.close(r)
    assert got == total
    return dt


def s_queue(total: int) -> float:
    q: queue.Queue = queue.Queue()

    def writer():
        for c in chunks(total, CHUNK):
            q.put(bytes(c))
        q.put(None)

    t = time.perf_counter()
    th = threading.Thread(target=writer)
    th.start()
    got = 0
    while True:
        b = q.get()
        if b is None:
            break
        got += len(b)
    dt = time.perf_counter() - t
    th.join()
    assert got == total
    return dt


# --- bodypipe streaming ---------------------------------------------------------------------


def _pipe(ring: bool, content_length=None):
    if ring:
        return bodypipe.pipe(content_length, max_buffered=RING)
    return bodypipe.pipe(content_length)


def s_bp_pywriter(total: int, ring: bool) -> float:
    w, r = _pipe(ring)

    def writer():
        for c in chunks(total, CHUNK):
            w.write(c)
        w.close()

    t = time.perf_counter()
    th = threading.Thread(target=writer)
    th.start()
    got = drain_read(r)
    dt = time.perf_counter() - t
    th.join()
    assert got == total, (got, total)
    return dt


def have_feed() -> bool:
    return bodypipe is not None and hasattr(bodypipe, "_bench_feed")


def s_bp_nogil(total: int, ring: bool) -> float:
    w, r = _pipe(ring)
    t = time.perf_counter()
    bodypipe._bench_feed(w, total, CHUNK)
    got = drain_read(r)
    dt = time.perf_counter() - t
    assert got == total, (got, total)
    return dt


# --- finished-body workloads ----------------------------------------------------------------


def finished_pipe(body: bytes, content_length: bool = False):
    w, r = bodypipe.pipe(len(body) if content_length else None)
    mv = memoryview(body)
    for i in range(0, len(body), CHUNK):
        w.write(mv[i : i + CHUNK])
    w.close()
    return r


def readinto_all(f) -> int:
    buf = bytearray(READ)
    got = 0
    ri = f.readinto
    while True:
        n = ri(buf)
        if not n:
            return got
        got += n


def make_lines(n: int) -> bytes:
    # Lines of 20-100 bytes (mean ~60), like form fields or CSV rows.
    return b"".join(b"line %07d %s\n" % (i, b"x" * (7 + (i * 37) % 80)) for i in range(n))


def iterate(f) -> int:
    k = 0
    for _ in f:
        k += 1
    return k


def readline_loop(f) -> int:
    k = 0
    rl = f.readline
    while rl():
        k += 1
    return k


# --- driver ---------------------------------------------------------------------------------


def timed(fn, *a) -> float:
    t = time.perf_counter()
    fn(*a)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_REPS", "5")))
    ap.add_argument("--scale", type=float, default=float(os.environ.get("BENCH_SCALE", "1.0")))
    ap.add_argument("--out", default="bench-results/python.json")
    args = ap.parse_args()
    reps, scale = max(1, args.reps), args.scale
    out = {"suite": "python", "python": sys.version.split()[0], "platform": platform.platform(), "metrics": {}, "targets": [], "notes": []}
    m = out["metrics"]
    if bodypipe is None:
        out["notes"].append("bodypipe is not importable: pip install ./python")
        write(out, args.out)
        print("python bench: bodypipe not importable; skipped")
        return 0

    total = max(16 * MIB, int(256 * MIB * scale)) // MIB * MIB
    gbps = lambda dt: total / dt / 1e9  # noqa: E731

    # 1. Streaming, 64 KiB chunks, reader read(65536).
    designs = {
        "bytesio_finished": lambda: s_bytesio(total),
        "os_pipe_pywriter": lambda: s_os_pipe(total),
        "queue_pywriter": lambda: s_queue(total),
        "bodypipe_pywriter_unbounded": lambda: s_bp_pywriter(total, False),
        "bodypipe_pywriter_ring": lambda: s_bp_pywriter(total, True),
    }
    if have_feed():
        designs["bodypipe_nogil_unbounded"] = lambda: s_bp_nogil(total, False)
        designs["bodypipe_nogil_ring"] = lambda: s_bp_nogil(total, True)
    else:
        out["notes"].append(
            "bodypipe._bench_feed is missing (a build without the `bench` feature; `make bench-python` installs one): no-GIL writer rows not measured"
        )
    print(f"python stream: {total >> 20} MiB in 64 KiB chunks x {reps} reps", file=sys.stderr)
    samples = {k: [] for k in designs}
    for _ in range(reps):
        for k, f in designs.items():
            samples[k].append(gbps(f()))
    for k, v in samples.items():
        m[f"py.stream.{k}.GBps"] = {"value": statistics.median(v), "unit": "GB/s", "samples": v}

    # 2. Finished body: read(65536) and readinto, bodypipe vs BytesIO.
    body = PATTERN[:MIB] * (total // MIB)
    fin = {
        "read.bytesio": lambda: timed(drain_read, io.BytesIO(body)),
        "read.bodypipe": lambda: timed(drain_read, finished_pipe(body)),
        "readinto.bytesio": lambda: timed(readinto_all, io.BytesIO(body)),
        "readinto.bodypipe": lambda: timed(readinto_all, finished_pipe(body)),
    }
    samples = {k: [] for k in fin}
    for _ in range(reps):
        for k, f in fin.items():
            samples[k].append(gbps(f()))
    for k, v in samples.items():
        m[f"py.finished.{k}.GBps"] = {"value": statistics.median(v), "unit": "GB/s", "samples": v}
    del body

    # 3. Lines: 1 M lines, iteration and readline().
    nlines = max(10_000, int(1_000_000 * scale))
    lines = make_lines(nlines)
    print(f"python lines: {nlines} lines, {len(lines) >> 20} MiB", file=sys.stderr)
    lw = {
        "iter.bytesio": lambda: timed(iterate, io.BytesIO(lines)),
        "iter.bodypipe": lambda: timed(iterate, finished_pipe(lines)),
        "readline.bytesio": lambda: timed(readline_loop, io.BytesIO(lines)),
        "readline.bodypipe": lambda: timed(readline_loop, finished_pipe(lines)),
    }
    samples = {k: [] for k in lw}
    for _ in range(reps):
        for k, f in lw.items():
            samples[k].append(nlines / f() / 1e6)
    for k, v in samples.items():
        m[f"py.lines.{k}.Mlines_per_s"] = {"value": statistics.median(v), "unit": "M lines/s", "samples": v}
    del lines

    # 4. find of a multipart boundary in 100 MiB (at the very end), and memoryview export.
    size = max(8 * MIB, int(100 * MIB * scale)) // MIB * MIB
    boundary = b"\r\n------WebKitFormBoundary7MA4YWxkTrZu0gW"
    big = (PATTERN[:MIB] * (size // MIB))[: size - len(boundary)] + boundary
    r_seg = finished_pipe(big)  # unknown length: segments up to 8 MiB
    r_one = bodypipe.PyBuffer.from_bytes(big)  # one segment (a streamed body, declared length
    # or not, grows in segments of up to 8 MiB: memory follows the bytes, never the claim)
    bio = io.BytesIO(big)
    fw = {
        "find.bytes": lambda: timed(big.find, boundary),
        "find.bodypipe": lambda: timed(r_seg.find, boundary),
        "find.bodypipe_one_segment": lambda: timed(r_one.find, boundary),
    }
    assert r_seg.find(boundary) == big.find(boundary)
    samples = {k: [] for k in fw}
    for _ in range(reps):
        for k, f in fw.items():
            samples[k].append(size / f() / 1e9)
    for k, v in samples.items():
        m[f"py.{k}.GBps"] = {"value": statistics.median(v), "unit": "GB/s", "samples": v}

    def mv_time(obj) -> float:
        t = time.perf_counter()
        mv = memoryview(obj)
        x = mv[len(mv) // 2]
        y = bytes(mv[1000:1064])
        dt = time.perf_counter() - t
        mv.release()
        return dt + 0 * x * len(y)

    mw = {
        "memoryview.bytesio_getbuffer": lambda: mv_time(bio.getbuffer()),
        "memoryview.bodypipe_one_segment": lambda: mv_time(r_one),
        "memoryview.bodypipe_segmented": lambda: mv_time(r_seg),
    }
    samples = {k: [] for k in mw}
    for _ in range(reps):
        for k, f in mw.items():
            samples[k].append(f() * 1e6)
    for k, v in samples.items():
        m[f"py.{k}.us"] = {"value": statistics.median(v), "unit": "us", "samples": v}
    del big, r_seg, r_one, bio

    # Targets.
    def val(k):
        x = m.get(k)
        return None if x is None else x["value"]

    def target(tid, what, num, den, bound):
        v, b = val(num), val(den)
        if v is None or b is None:
            out["targets"].append({"id": tid, "what": what, "value": v, "baseline": b, "ratio": None, "bound": bound, "cmp": ">=", "met": None})
            return
        out["targets"].append({"id": tid, "what": what, "value": v, "baseline": b, "ratio": v / b, "bound": bound, "cmp": ">=", "met": v / b >= bound, "unit": m[num]["unit"]})

    S = "py.stream."
    target("py_nogil_ring_vs_bytesio", "Py read(65536), no-GIL writer, ring / BytesIO", S + "bodypipe_nogil_ring.GBps", S + "bytesio_finished.GBps", 0.6)
    target("py_nogil_unbounded_vs_bytesio", "Py read(65536), no-GIL writer, unbounded / BytesIO", S + "bodypipe_nogil_unbounded.GBps", S + "bytesio_finished.GBps", 0.6)
    target("py_pywriter_ring_vs_bytesio", "Py read(65536), Python writer, ring / BytesIO", S + "bodypipe_pywriter_ring.GBps", S + "bytesio_finished.GBps", 0.6)  # issue 13
    target("py_pywriter_unbounded_vs_bytesio", "Py read(65536), Python writer, unbounded / BytesIO", S + "bodypipe_pywriter_unbounded.GBps", S + "bytesio_finished.GBps", 0.35)
    target("py_pywriter_ring_vs_os_pipe", "Py read(65536), Python writer, ring / os.pipe", S + "bodypipe_pywriter_ring.GBps", S + "os_pipe_pywriter.GBps", 8.0)
    target("py_pywriter_unbounded_vs_os_pipe", "Py read(65536), Python writer, unbounded / os.pipe", S + "bodypipe_pywriter_unbounded.GBps", S + "os_pipe_pywriter.GBps", 8.0)
    target("py_lines_vs_bytesio", "Py line iteration / BytesIO", "py.lines.iter.bodypipe.Mlines_per_s", "py.lines.iter.bytesio.Mlines_per_s", 0.8)
    write(out, args.out)
    print_table(out)
    return 0


def write(out, path):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=1)


def print_table(out):
    print("\n== Python (median) ==")
    for k, v in out["metrics"].items():
        print(f"{k:<58}{v['value']:>12.3f} {v['unit']}")
    print("\n== Python targets ==")
    for t in out["targets"]:
        if t["ratio"] is None:
            print(f"SKIP {t['what']}")
            continue
        print(f"{'MET ' if t['met'] else 'MISS'} {t['what']:<58} {t['value']:>9.3f} / {t['baseline']:>9.3f} = {t['ratio']:>7.3f}  (target >= {t['bound']})")
    for n in out["notes"]:
        print("note:", n)


if __name__ == "__main__":
    sys.exit(main())
