"""Each read call returns one contiguous slice of the stream, whatever other threads sharing the
buffer do, as a file or `io.BufferedReader` does: `read(n)`, `readinto`, `read1`, `read()`, lines,
large (copied with the GIL released) and small (copied with it held).

The body is 8-byte little-endian words, word i holding its own offset 8*i, so a result is
contiguous exactly when it equals the body at the offset its first word names. (Before, a large
copy ran in 1 MiB pieces, each under its own hold of the cursor, and 4 threads reading 3 MiB at a
time got a few results spliced from distant parts of the body in every run.)
"""

import array
import sys
import threading

import pytest

import bodypipe

MiB = 1 << 20
SIZE = 48 * MiB
THREADS = 4

assert sys.byteorder == "little"
BODY = array.array("Q", range(0, SIZE, 8)).tobytes()


def check_contiguous(chunks, total):
    """Every chunk is the body at its own offset, and together they are the body, once."""
    starts = []
    for c in chunks:
        assert len(c) % 8 == 0, "a result ends inside a word"
        at = int.from_bytes(c[:8], "little")
        assert c == BODY[at : at + len(c)], f"a {len(c)}-byte result from {at} is spliced"
        starts.append((at, len(c)))
    starts.sort()
    pos = 0
    for at, n in starts:
        assert at == pos, f"bytes {pos}..{at} read twice or never"
        pos += n
    assert pos == total


def read_concurrently(buf, how, step):
    chunks = []
    lock = threading.Lock()

    def reader():
        mine = []
        target = bytearray(step)
        while True:
            if how == "read":
                c = buf.read(step)
            elif how == "read1":
                c = buf.read1(step)
            elif how == "readinto":
                n = buf.readinto(target)
                c = bytes(target[:n])
            else:
                raise AssertionError(how)
            if not c:
                break
            mine.append(c)
        with lock:
            chunks.extend(mine)

    threads = [threading.Thread(target=reader) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return chunks


def streamed(max_buffered=None, piece=256 * 1024):
    """A body fed by a writer thread while the readers run; returns (buffer, thread)."""
    w, buf = bodypipe.pipe(max_buffered=max_buffered)

    def feed():
        for i in range(0, SIZE, piece):
            w.write(BODY[i : i + piece])
        w.close()

    t = threading.Thread(target=feed)
    t.start()
    return buf, t


# Steps are multiples of 8 so that a whole-word check applies; 3 MiB is copied with the GIL
# released (above 256 KiB), 4 KiB with it held.
STEPS = [3 * MiB, 4096]


@pytest.mark.parametrize("step", STEPS, ids=["3MiB", "4KiB"])
@pytest.mark.parametrize("how", ["read", "readinto", "read1"])
def test_complete_body(how, step):
    for _ in range(8 if step > 4096 else 1):
        buf = bodypipe.PyBuffer.from_bytes(BODY)
        chunks = read_concurrently(buf, how, step)
        check_contiguous(chunks, SIZE)
        if how == "read":
            assert all(len(c) == step for c in chunks)  # SIZE is a multiple of every step


@pytest.mark.parametrize("step", STEPS, ids=["3MiB", "4KiB"])
@pytest.mark.parametrize("how", ["read", "readinto", "read1"])
@pytest.mark.parametrize("mode", ["unbounded", "ring 4 MiB"])
def test_streamed_body(mode, how, step):
    """While a writer thread feeds the body; ring mode with a high-water mark above the step, so
    every `read(n)` can wait for all of its bytes and take them in one step."""
    buf, t = streamed(max_buffered=4 * MiB if mode.startswith("ring") else None)
    chunks = read_concurrently(buf, how, step)
    t.join()
    check_contiguous(chunks, SIZE)
    if how == "read":
        # read(n) is exactly n bytes (SIZE is a multiple): never short because another thread won.
        assert all(len(c) == step for c in chunks)


def test_read_all_is_one_slice():
    """Threads racing `read()` on a complete body: one of them gets all of it, the rest b''."""
    for _ in range(5):
        buf = bodypipe.PyBuffer.from_bytes(BODY)
        out = []
        threads = [threading.Thread(target=lambda: out.append(buf.read())) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(len(c) for c in out) == [0] * (THREADS - 1) + [SIZE]
        check_contiguous([c for c in out if c], SIZE)


@pytest.mark.parametrize("line", [64, 512 * 1024], ids=["short lines", "long lines"])
def test_lines_are_whole(line):
    """Lines (short ones copied with the GIL held, long ones scanned and copied without it) are
    never torn between threads: each is a line of the body, and together they are the body."""
    n = (8 * MiB) // line
    lines = [b"%011d|" % (i * line) + b"." * (line - 13) + b"\n" for i in range(n)]
    body = b"".join(lines)
    got = []
    lock = threading.Lock()
    buf = bodypipe.PyBuffer.from_bytes(body)

    def reader():
        mine = [ln for ln in buf]
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=reader) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(got) == lines
