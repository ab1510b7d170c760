"""Streaming under load, the GIL, and several reader threads."""

import hashlib
import random
import threading
import time
import zlib

import pytest

import bodypipe
from conftest import until

TOTAL = 100 * 1024 * 1024  # 100 MiB


def start_random_writer(w, total, seed, max_chunk=256 * 1024, pause_every=64):
    """Writes `total` pseudo-random bytes in random chunk sizes with occasional pauses; returns
    (thread, result dict with the sha256 of what was written)."""
    result = {}

    def run():
        rng = random.Random(seed)
        # A pool of random bytes to slice from: generating 100 MiB of randomness would dominate.
        pool = rng.randbytes(4 * 1024 * 1024) + b"\n" * 64
        h = hashlib.sha256()
        sent = 0
        n = 0
        while sent < total:
            size = min(rng.randint(1, max_chunk), total - sent)
            start = rng.randrange(0, len(pool) - size)
            chunk = pool[start : start + size]
            w.write(chunk)
            h.update(chunk)
            sent += size
            n += 1
            if n % pause_every == 0:
                time.sleep(rng.random() * 0.003)
        w.close()
        result["sha"] = h.hexdigest()
        result["chunks"] = n

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


def consume(b, mode, rng):
    h = hashlib.sha256()
    total = 0
    if mode == "read":
        while True:
            d = b.read(rng.choice([1, 100, 4096, 65536, 1 << 20]))
            if not d:
                break
            h.update(d)
            total += len(d)
    elif mode == "readline":
        while True:
            line = b.readline()
            if not line:
                break
            h.update(line)
            total += len(line)
    elif mode == "readinto":
        buf = bytearray(1 << 17)
        mv = memoryview(buf)
        while True:
            n = b.readinto(mv[: rng.choice([1, 777, 65536, 1 << 17])])
            if n == 0:
                break
            h.update(mv[:n])
            total += n
    elif mode == "iter":
        for line in b:
            h.update(line)
            total += len(line)
    elif mode == "mixed":
        buf = bytearray(65536)
        while True:
            op = rng.randrange(4)
            if op == 0:
                d = b.read(rng.randint(1, 200000))
            elif op == 1:
                d = b.readline(rng.choice([-1, 10, 100000]))
            elif op == 2:
                n = b.readinto(buf)
                d = bytes(buf[:n])
            else:
                d = b.read1(rng.randint(1, 100000))
            if not d:
                break
            h.update(d)
            total += len(d)
    return h.hexdigest(), total


@pytest.mark.parametrize("mode", ["read", "readline", "readinto", "iter", "mixed"])
@pytest.mark.parametrize("kind", ["unbounded", "ring", "content_length"])
def test_stream_100mib(mode, kind):
    kwargs = {}
    content_length = None
    if kind == "ring":
        kwargs["max_buffered"] = 1 << 20
    elif kind == "content_length":
        content_length = TOTAL
    w, b = bodypipe.pipe(content_length, **kwargs)
    seed = zlib.crc32(f"{mode}-{kind}".encode())
    t, result = start_random_writer(w, TOTAL, seed)
    digest, total = consume(b, mode, random.Random(seed + 1))
    t.join(60)
    assert total == TOTAL
    assert digest == result["sha"]
    assert b.at_eof()


def test_gil_released_while_blocked_and_write_wakes_reader():
    w, b = bodypipe.pipe()
    got = []
    reader = threading.Thread(target=lambda: got.append(b.read(5)))
    reader.start()
    # While the reader is blocked, this thread keeps running Python code. If the reader held the
    # GIL while waiting, this loop could not make progress.
    deadline = time.monotonic() + 0.3
    counter = 0
    while time.monotonic() < deadline:
        counter += 1
    assert counter > 10_000
    assert reader.is_alive() and got == []
    # A pure-Python thread also runs concurrently with the blocked reader.
    ticks = []
    ticker = threading.Thread(target=lambda: [ticks.append(i) or time.sleep(0.001) for i in range(50)])
    ticker.start()
    ticker.join(10)
    assert len(ticks) == 50
    assert reader.is_alive()
    w.write(b"hel")
    w.write(b"lo")
    reader.join(5)
    assert not reader.is_alive()
    assert got == [b"hello"]
    w.close()


def test_blocked_reader_does_not_stall_other_calls():
    w, b = bodypipe.pipe()
    w.write(b"xy")
    b.read(2)
    t = threading.Thread(target=lambda: b.read(10))
    t.start()
    until("the read parks", lambda: b.stats().reader_waiting)

    def others():
        for _ in range(1000):
            b.readable_amount()
            b.tell()
            b.at_eof()
            repr(b)

    # Nothing is written until they are done: calls that waited behind the blocked read would
    # never finish (the join's bound only keeps a failure from hanging the suite).
    o = threading.Thread(target=others)
    o.start()
    o.join(30)
    assert not o.is_alive(), "tell()/readable_amount()/at_eof()/repr() wait behind a blocked read"
    assert t.is_alive()
    w.write(b"0123456789")
    t.join(5)
    assert not t.is_alive()
    w.close()


def test_many_reader_threads_share_one_cursor():
    w, b = bodypipe.pipe()
    n_records = 20000
    record = 16
    results = [[] for _ in range(4)]

    def reader(i):
        while True:
            line = b.readline()
            if not line:
                return
            results[i].append(line)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for k in range(n_records):
        w.write(b"%015d\n" % k)
    w.close()
    for t in threads:
        t.join(30)
    lines = [line for r in results for line in r]
    assert all(len(line) == record for line in lines)  # never a torn line
    assert sorted(lines) == [b"%015d\n" % k for k in range(n_records)]  # none lost or doubled


def test_reader_threads_share_long_lines():
    """Lines too long to copy with the GIL held are found, then read with it released: another
    thread may take bytes in between, and still no line is torn, lost or doubled."""
    w, b = bodypipe.pipe()
    b.settimeout(30)
    rng = random.Random(11)
    lines = [b"%08d" % k + bytes([65 + k % 26]) * rng.randint(200_000, 600_000) + b"\n" for k in range(60)]
    results = [[] for _ in range(4)]

    def reader(i):
        while line := b.readline():
            results[i].append(line)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    data = b"".join(lines)
    for i in range(0, len(data), 1 << 20):
        w.write(data[i : i + (1 << 20)])
    w.close()
    for t in threads:
        t.join(30)
    assert sorted(line for r in results for line in r) == lines


def test_many_reader_threads_read_n():
    data = bytes(range(256)) * 4096  # 1 MiB
    w, b = bodypipe.pipe()
    pieces = [[] for _ in range(3)]

    def reader(i):
        while True:
            d = b.read(1000)
            if not d:
                return
            pieces[i].append(d)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for i in range(0, len(data), 4099):
        w.write(data[i : i + 4099])
    w.close()
    for t in threads:
        t.join(30)
    total = sum(len(p) for ps in pieces for p in ps)
    assert total == len(data)
    # Every byte value occurs equally often: no byte lost or duplicated.
    counts = [0] * 256
    for ps in pieces:
        for p in ps:
            for v, c in enumerate(bytes(p).count(bytes([v])) for v in range(256)):
                counts[v] += c
    assert counts == [4096] * 256


def _ticks_during(call):
    """Runs `call()` while another thread appends timestamps as fast as it gets the GIL; returns
    (the call's result, the timestamps, the call's start and end)."""
    stamps = []
    stop = threading.Event()

    def ticker():
        now = time.perf_counter
        while not stop.is_set():
            stamps.append(now())
            time.sleep(0)

    t = threading.Thread(target=ticker)
    t.start()
    time.sleep(0.02)
    t0 = time.perf_counter()
    try:
        out = call()
    finally:
        t1 = time.perf_counter()
        stop.set()
        t.join()
    return out, stamps, t0, t1


@pytest.mark.parametrize("how", ["read_all", "read_n", "readinto"])
def test_large_copy_releases_gil(how):
    """Another thread runs Python code *during* one large read call: a call that held the GIL
    throughout would leave no ticks inside its time window. On a loaded machine the ticker may
    simply not be scheduled during one call, so up to 5 attempts are made; with the GIL held,
    every attempt would fail."""
    size = 64 * 1024 * 1024
    data = b"\x01" * size
    windows = []
    for _attempt in range(5):
        b = bodypipe.PyBuffer.from_bytes(data)
        target = bytearray(size) if how == "readinto" else None

        def call():
            if how == "read_all":
                return b.read()
            if how == "read_n":
                return b.read(size)
            return b.readinto(target)

        out, stamps, t0, t1 = _ticks_during(call)
        if how == "readinto":
            out = target[:out]  # outside the timed window
        assert len(out) == size
        del out, target
        lo, hi = t0 + (t1 - t0) * 0.1, t1 - (t1 - t0) * 0.1
        if any(lo < s < hi for s in stamps):
            return
        windows.append(round(t1 - t0, 3))
    pytest.fail(f"no ticks inside any of the large read calls ({windows} s)")


def test_a_write_wakes_the_parked_reader_itself():
    """A blocked read parks in the core, registered to be woken, and the write that meets it
    wakes it with one wake syscall: it neither polls nor waits out its 50 ms slice. Exact counts
    in every interleaving, no timing: the write comes once the read shows as parked."""
    w, b = bodypipe.pipe()
    got = []
    t = threading.Thread(target=lambda: got.append(b.read(1)))
    t.start()
    until("the read parks", lambda: b.stats().reader_waiting)
    assert b.stats().reader_wakes == 0
    w.write(b"x")
    t.join(30)
    assert got == [b"x"]
    s = b.stats()
    assert (s.reader_wakes, s.reader_waiting) == (1, False)


def test_a_read_wakes_the_parked_ring_writer_itself():
    """Ring mode: a write waiting for room parks in the core and the read that makes room wakes
    it with one wake syscall."""
    w, b = bodypipe.pipe(max_buffered=1)
    w.write(b"a")
    t = threading.Thread(target=w.write, args=(b"b",))  # waits for the reader to make room
    t.start()
    until("the write parks", lambda: b.stats().writer_waiting)
    assert b.stats().writer_wakes == 0
    assert b.read(1) == b"a"
    t.join(30)
    assert not t.is_alive()
    assert b.read(1) == b"b"
    s = b.stats()
    assert (s.writer_wakes, s.writer_waiting) == (1, False)
    assert (s.reader_wakes, s.reader_waiting) == (0, False), "the reader never waited"


def test_stats_is_a_snapshot_of_the_counters():
    w, b = bodypipe.pipe(10, max_buffered=64)
    w.write(b"one\ntwo\n")
    assert next(b) == b"one\n"  # the line after it is taken ahead, and still counts as unread
    s = b.stats()
    assert (s.written, s.position, s.buffered) == (8, 4, 4) == (w.written, b.tell(), b.readable_amount())
    assert (s.content_length, s.max_buffered, s.eof, s.aborted, s.reader_closed) == (10, 64, False, False, False)
    assert s == b.stats()
    w.abort("gone")
    assert b.stats().aborted and not s.aborted
    b.close()
    assert b.stats().reader_closed
    assert repr(s).startswith("bodypipe.Stats(written=8, position=4, buffered=4, content_length=10, ")


BIG = 64 * 1024 * 1024


def _ring_body(data):
    """A ring-mode body of unknown length, complete before the read starts, so the read takes
    it all in one step and copies it once, straight into the result."""
    w, b = bodypipe.pipe(max_buffered=len(data) + 1)
    w.write(data)
    w.close()
    return b


@pytest.mark.parametrize(
    "how,make,call",
    [
        ("ring read()", _ring_body, lambda b: b.read()),
        ("ring readall()", _ring_body, lambda b: b.readall()),
        ("peek()", bodypipe.PyBuffer.from_bytes, lambda b: b.peek()),
        ("long readline()", lambda d: bodypipe.PyBuffer.from_bytes(d + b"\n"), lambda b: b.readline()),
    ],
)
def test_gathered_and_peeked_copies_release_gil(how, make, call):
    """Ring-mode read() with no declared length (the whole body there when it starts, so it is
    one copy straight into the result), peek() and a line longer than the GIL-held copy limit
    copy the whole 64 MiB body: another thread runs Python code during the call. A property, not
    a timing: a call that held the GIL for its copy (nearly all of it) would leave no tick of the
    other thread inside its middle; on a loaded machine the ticker may simply not be scheduled
    during one call, so up to 5 attempts are made, and with the GIL held every attempt fails."""
    data = b"\x02" * BIG
    windows = []
    for _attempt in range(5):
        b = make(data)  # outside the call's window
        out, stamps, t0, t1 = _ticks_during(lambda: call(b))
        del b
        body = out.rstrip(b"\n")
        assert len(body) == BIG and body.count(b"\x02") == BIG
        del out, body
        lo, hi = t0 + (t1 - t0) * 0.1, t1 - (t1 - t0) * 0.1
        if any(lo < s < hi for s in stamps):
            return
        windows.append(round(t1 - t0, 3))
    pytest.fail(f"{how}: no tick of another thread inside any of the calls ({windows} s)")
