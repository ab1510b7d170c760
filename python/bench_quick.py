"""Quick throughput check: bodypipe.PyBuffer vs io.BytesIO vs an os.pipe fed by a thread.

Measures `read(65536)` loops and line iteration (`for line in f`) over the same body, in one run,
and prints the median of several repetitions. A first measurement, not a benchmark suite: run
on a quiet machine and compare columns within one run only.

    python python/bench_quick.py [--mib 64] [--reps 5]
"""

import argparse
import os
import statistics
import threading
import time
import io

import bodypipe

CHUNK = 65536


def make_body(mib):
    # Lines of varied length (~80 bytes on average), like a text/CSV upload.
    line = b"".join(b"%06d,some field,another field with more text,%d\n" % (i, i * 7) for i in range(1000))
    reps = mib * 1024 * 1024 // len(line) + 1
    return (line * reps)[: mib * 1024 * 1024]


def writer_chunks(body, size=CHUNK):
    mv = memoryview(body)
    return [mv[i : i + size] for i in range(0, len(body), size)]


# --- sources: each returns (file-like, cleanup) with a producer already running if streaming ---


def src_bytesio(body):
    return io.BytesIO(body), lambda: None


def src_bodypipe_full(body):
    return bodypipe.PyBuffer.from_bytes(body), lambda: None


def src_bodypipe_stream(body):
    w, b = bodypipe.pipe()

    def run():
        for c in writer_chunks(body):
            w.write(c)
        w.close()

    t = threading.Thread(target=run)
    t.start()
    return b, t.join


def src_bodypipe_stream_cl(body):
    w, b = bodypipe.pipe(len(body))

    def run():
        for c in writer_chunks(body):
            w.write(c)
        w.close()

    t = threading.Thread(target=run)
    t.start()
    return b, t.join


def src_os_pipe(body):
    r, wfd = os.pipe()

    def run():
        with open(wfd, "wb", buffering=0) as f:
            for c in writer_chunks(body):
                f.write(c)

    t = threading.Thread(target=run)
    t.start()
    f = open(r, "rb")  # BufferedReader over the pipe: read(n) returns n bytes, like ours

    def cleanup():
        t.join()
        f.close()

    return f, cleanup


SOURCES = [
    ("io.BytesIO (in memory)", src_bytesio),
    ("bodypipe from_bytes (complete)", src_bodypipe_full),
    ("os.pipe + writer thread", src_os_pipe),
    ("bodypipe pipe() + writer thread", src_bodypipe_stream),
    ("bodypipe pipe(len) + writer thread", src_bodypipe_stream_cl),
]


def run_read(f):
    n = 0
    read = f.read
    while True:
        d = read(CHUNK)
        if not d:
            return n
        n += len(d)


def run_lines(f):
    n = 0
    for line in f:
        n += 1
    return n


def measure(make_src, body, fn, reps):
    rates = []
    for _ in range(reps):
        f, cleanup = make_src(body)
        t0 = time.perf_counter()
        fn(f)
        dt = time.perf_counter() - t0
        cleanup()
        rates.append(len(body) / dt / 1e6)
    return statistics.median(rates)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=64, help="body size in MiB (default 64)")
    ap.add_argument("--reps", type=int, default=5, help="repetitions per cell (median reported)")
    args = ap.parse_args()
    body = make_body(args.mib)
    lines = body.count(b"\n")
    print(f"body: {args.mib} MiB, {lines} lines (avg {len(body) / lines:.0f} B); median of {args.reps} runs, MB/s")
    print(f"{'source':38} {'read(65536)':>12} {'line iter':>12} {'lines/s':>12}")
    for name, make_src in SOURCES:
        r = measure(make_src, body, run_read, args.reps)
        li = measure(make_src, body, run_lines, args.reps)
        print(f"{name:38} {r:12.0f} {li:12.0f} {li * 1e6 / (len(body) / lines) / 1e6:11.2f}M")


if __name__ == "__main__":
    main()
