"""Async readers: bodypipe's readiness wait vs the reference doc's polling loop.

Measures, on the default asyncio loop and on uvloop:

(a) wake-up latency: a thread writes 8 bytes (a perf_counter_ns timestamp) to a body whose async
    reader is parked; latency = reader's clock on return minus the timestamp. p50/p99 over
    --samples writes, each after the reader has had time to park (0.5 ms).
      * ``aread``   : ``await buf.aread(8)`` (eventfd wake-up through loop.add_reader)
      * ``poll``    : the reference's loop: ``while not buf.readable_amount(): await
                      asyncio.sleep(0.001)``, then ``buf.read(8)``
      * ``thread``  : for scale, a blocking ``buf.read(8)`` in a thread (futex wake-up; no loop)
(b) idle CPU: process CPU time (``time.process_time``, all threads) while --readers async readers
    wait 1 s for data that never comes, for ``aread``, ``poll``, and an empty loop (``none``).
(c) fan-out: one thread writes 1 byte to each of --readers bodies, all with a parked reader;
    time from the first write to the last reader's wake-up (median of 5).
(d) throughput: a thread writes --mib MiB in 64 KiB writes into a ring-mode body (4 MiB
    high-water mark); one reader consumes with ``aread(65536)``, the polling loop, or (for scale)
    a thread's blocking ``read1(65536)``.

    python python/bench_async.py [--samples 2000] [--readers 1000] [--mib 256] [--loops asyncio,uvloop]
"""

import argparse
import asyncio
import random
import statistics
import struct
import threading
import time

import bodypipe

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

# The writer waits a random 0.5-1.5 ms before each write, so the reader is parked (not on its
# fast path) and the polling reader's phase is random, as with real traffic.
PARK = (0.0005, 0.0015)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def poll_read(buf, n):
    """The reference doc's answer for asyncio."""
    while not buf.readable_amount() and not buf.at_eof():
        await asyncio.sleep(0.001)
    return buf.read(n) if buf.readable_amount() else b""


def latency_writer(w, samples, go):
    rng = random.Random(1)
    for _ in range(samples):
        go.wait()
        go.clear()
        time.sleep(rng.uniform(*PARK))
        w.write(struct.pack("q", time.perf_counter_ns()))
    w.close()


async def latency_async(kind, samples):
    w, b = bodypipe.pipe()
    go = threading.Event()
    t = threading.Thread(target=latency_writer, args=(w, samples, go), daemon=True)
    t.start()
    lat = []
    for _ in range(samples):
        go.set()
        data = await (b.aread(8) if kind == "aread" else poll_read(b, 8))
        now = time.perf_counter_ns()
        lat.append((now - struct.unpack("q", data)[0]) / 1000)
    t.join()
    return lat


def latency_thread(samples):
    w, b = bodypipe.pipe()
    go = threading.Event()
    t = threading.Thread(target=latency_writer, args=(w, samples, go), daemon=True)
    t.start()
    lat = []
    for _ in range(samples):
        go.set()
        data = b.read(8)
        lat.append((time.perf_counter_ns() - struct.unpack("q", data)[0]) / 1000)
    t.join()
    return lat


async def idle_cpu(kind, readers, secs):
    pipes = [bodypipe.pipe() for _ in range(readers if kind != "none" else 0)]
    if kind == "aread":
        tasks = [asyncio.create_task(b.aread(1)) for _, b in pipes]
    else:
        tasks = [asyncio.create_task(poll_read(b, 1)) for _, b in pipes]
    await asyncio.sleep(0.2)  # all parked / polling
    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(secs)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    for w, _ in pipes:
        w.write(b"x")
    await asyncio.gather(*tasks)
    return cpu, wall


async def fan_out(kind, readers):
    pipes = [bodypipe.pipe() for _ in range(readers)]
    done = []

    async def reader(b):
        await (b.aread(1) if kind == "aread" else poll_read(b, 1))
        done.append(time.perf_counter_ns())

    tasks = [asyncio.create_task(reader(b)) for _, b in pipes]
    await asyncio.sleep(0.1)
    start = []

    def writer():
        start.append(time.perf_counter_ns())
        for w, _ in pipes:
            w.write(b"x")

    t = threading.Thread(target=writer)
    t.start()
    await asyncio.gather(*tasks)
    t.join()
    return (max(done) - start[0]) / 1e6


async def throughput(kind, mib, chunk=65536):
    w, b = bodypipe.pipe(max_buffered=4 << 20)
    block = bytes(chunk)
    total = mib << 20

    def writer():
        for _ in range(total // chunk):
            w.write(block)
        w.close()

    t = threading.Thread(target=writer)
    t0 = time.perf_counter()
    t.start()
    got = 0
    if kind == "aread":
        while data := await b.aread(chunk):
            got += len(data)
    else:
        while data := await poll_read(b, chunk):
            got += len(data)
    t.join()
    assert got == total
    return mib / (time.perf_counter() - t0)


def throughput_thread(mib, chunk=65536):
    w, b = bodypipe.pipe(max_buffered=4 << 20)
    block = bytes(chunk)
    total = mib << 20

    def writer():
        for _ in range(total // chunk):
            w.write(block)
        w.close()

    t = threading.Thread(target=writer)
    t0 = time.perf_counter()
    t.start()
    got = 0
    while data := b.read1(chunk):
        got += len(data)
    t.join()
    assert got == total
    return mib / (time.perf_counter() - t0)


def run_on(loop_kind, coro):
    if loop_kind == "uvloop":
        return uvloop.run(coro)
    return asyncio.run(coro)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--readers", type=int, default=1000)
    ap.add_argument("--idle", type=float, default=1.0, help="seconds of idle waiting in (b)")
    ap.add_argument("--mib", type=int, default=256, help="MiB moved in (d)")
    ap.add_argument("--loops", default="asyncio,uvloop" if uvloop else "asyncio")
    args = ap.parse_args()
    loops = args.loops.split(",")

    print(f"(a) wake-up latency, thread write -> reader running, {args.samples} samples, microseconds")
    print(f"{'loop':<8} {'reader':<8} {'p50':>9} {'p99':>9} {'mean':>9}")
    for lk in loops:
        for kind in ("aread", "poll"):
            lat = run_on(lk, latency_async(kind, args.samples))
            print(f"{lk:<8} {kind:<8} {pct(lat, 50):9.1f} {pct(lat, 99):9.1f} {statistics.fmean(lat):9.1f}")
    lat = latency_thread(args.samples)
    print(f"{'-':<8} {'thread':<8} {pct(lat, 50):9.1f} {pct(lat, 99):9.1f} {statistics.fmean(lat):9.1f}")

    print(f"\n(b) CPU while {args.readers} async readers wait {args.idle:g} s for nothing")
    print(f"{'loop':<8} {'reader':<8} {'cpu s':>9} {'cpu %':>9}")
    for lk in loops:
        for kind in ("none", "aread", "poll"):
            cpu, wall = run_on(lk, idle_cpu(kind, args.readers, args.idle))
            print(f"{lk:<8} {kind:<8} {cpu:9.3f} {100 * cpu / wall:8.1f}%")

    print(f"\n(c) fan-out: one thread writes to {args.readers} bodies, time until every reader ran (ms)")
    print(f"{'loop':<8} {'reader':<8} {'ms':>9}")
    for lk in loops:
        for kind in ("aread", "poll"):
            ms = statistics.median(run_on(lk, fan_out(kind, args.readers)) for _ in range(5))
            print(f"{lk:<8} {kind:<8} {ms:9.2f}")

    print(f"\n(d) throughput: a thread writes {args.mib} MiB in 64 KiB writes (ring, 4 MiB), one reader (MiB/s)")
    print(f"{'loop':<8} {'reader':<8} {'MiB/s':>9}")
    for lk in loops:
        for kind in ("aread", "poll"):
            rate = statistics.median(run_on(lk, throughput(kind, args.mib)) for _ in range(3))
            print(f"{lk:<8} {kind:<8} {rate:9.0f}")
    rate = statistics.median(throughput_thread(args.mib) for _ in range(3))
    print(f"{'-':<8} {'thread':<8} {rate:9.0f}")


if __name__ == "__main__":
    main()
