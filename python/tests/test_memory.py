"""Memory follows the bytes received, never a length the client declared, and a small view pins
only its own segment. Measured as RSS (Linux /proc), each test printing its figure.

The bound the README states: per body, at most the bytes received plus one segment (4 KiB
doubling to 8 MiB, never more than the bytes before it plus 4 KiB) plus, while a read gathers,
one piece of the same size; ring mode adds `max_buffered`. A declared 1 GiB with nothing or one
byte sent is therefore a few KiB per request; before this bound it was 1 GiB per request in ring
mode (`read()` allocated and zero-filled the declared length) and 2 MiB in unbounded mode (the
prefault window ran ahead of the one byte written).
"""

import ctypes
import gc
import sys
import threading

import pytest

import bodypipe

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * KiB
    raise KeyError(field)


def rss():
    return _status("VmRSS")


def peak():
    return _status("VmHWM")


def reset_peak():
    """The peak RSS becomes the current RSS (/proc/self/clear_refs, Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def settled_rss():
    """RSS once freed memory is given back: glibc keeps freed chunks in its heap (returning only
    the top), so without `malloc_trim` RSS would show the allocator's cache, not what is live."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass
    return rss()


def report(capsys, text):
    with capsys.disabled():
        print(f"\n  [memory] {text}")


REQUESTS = 8


@pytest.mark.parametrize("sent", [0, 1])
@pytest.mark.parametrize("mode", ["ring", "unbounded"])
def test_declared_gib_costs_what_was_sent(mode, sent, capsys):
    """REQUESTS bodies that declare 1 GiB (ring mode: as the HTTP front end builds them) and send
    `sent` bytes, each with an app thread blocked in `read()` until its timeout: the peak RSS over
    all of them, per request, is a few KiB, not the declared length."""
    kw = {"max_buffered": MiB} if mode == "ring" else {}
    pairs = [bodypipe.pipe(content_length=GiB, **kw) for _ in range(REQUESTS)]
    go = threading.Barrier(REQUESTS + 1)
    partials = []

    def app(buf):
        buf.settimeout(0.3)  # so that read() returns; the test asserts nothing about time
        go.wait()
        with pytest.raises(TimeoutError) as ei:
            buf.read()
        partials.append(len(ei.value.partial))

    threads = [threading.Thread(target=app, args=(b,)) for _, b in pairs]
    for t in threads:
        t.start()
    gc.collect()
    base = rss()
    reset_peak()
    # Written after the baseline: what they cost (segments, prefault) is in the figure.
    for w, _ in pairs:
        if sent:
            w.write(b"x" * sent)
    go.wait()
    for t in threads:
        t.join()
    grown = peak() - base
    per = grown / REQUESTS
    report(capsys, f"{mode}, declared 1 GiB, {sent} byte(s) sent, {REQUESTS} requests in read(): "
                   f"peak RSS {grown / KiB:+.0f} KiB, {per / KiB:+.1f} KiB per request")
    # Every read really waited for the body (ring mode gathers as it goes: the byte sent is
    # consumed and handed back on the timeout; unbounded waits for the whole body first).
    assert partials == [sent if mode == "ring" else 0] * REQUESTS
    assert per < 256 * KiB, f"{per / KiB:.0f} KiB per request for {sent} byte(s) received"
    for w, _ in pairs:
        w.abort("done")


def test_one_byte_bodies_cost_a_page_each(capsys):
    """200 unbounded bodies declaring 1 GiB with 1 byte written each (no reader running)."""
    gc.collect()
    base = rss()
    bodies = []
    for _ in range(200):
        w, b = bodypipe.pipe(content_length=GiB)
        w.write(b"x")
        bodies.append((w, b))
    per = (rss() - base) / len(bodies)
    report(capsys, f"unbounded, declared 1 GiB, 1 byte written: {per / KiB:.1f} KiB RSS per body")
    assert per < 64 * KiB


@pytest.mark.parametrize("where", ["first", "last"])
def test_small_view_pins_only_its_segment(where, capsys):
    """A 256 MiB body written and read; everything released but a 10-byte memoryview: what stays
    allocated is about that view's segment (4 KiB for the first bytes, at most 8 MiB for the
    last), not the body (a segment's link to the next kept the whole chain alive before)."""
    base = settled_rss()
    w, b = bodypipe.pipe(max_size=GiB)
    chunk = b"z" * (64 * KiB)
    for _ in range(256 * MiB // len(chunk)):
        w.write(chunk)
    w.close()
    if where == "last":
        b.seek(-10, 2)
        view = memoryview(b)  # the last 10 bytes: one segment, zero-copy
        b.seek(0)
    else:
        view = b.views()[0][:10]
    while b.read(MiB):
        pass
    full = rss() - base
    del w, b, chunk
    kept = settled_rss() - base
    report(capsys, f"10-byte view of the {where} bytes of a 256 MiB body: +{full / MiB:.0f} MiB with the "
                   f"body, +{kept / MiB:.2f} MiB once all but the view is released")
    assert len(view) == 10 and bytes(view) == b"z" * 10
    assert full > 200 * MiB  # the body really was there
    assert kept < (2 * MiB if where == "first" else 12 * MiB)
    view.release()


def test_ring_read_of_unknown_length_does_not_peak_at_twice_the_body(capsys):
    """Ring mode, no declared length, `read()` gathering a 128 MiB body from a writer thread:
    the peak is the result plus a piece or two, not the gathered copy plus the result."""
    size = 128 * MiB
    w, b = bodypipe.pipe(max_buffered=MiB, max_size=GiB)
    chunk = b"r" * MiB

    def feed():
        for _ in range(size // len(chunk)):
            w.write(chunk)
        w.close()

    t = threading.Thread(target=feed)
    base = settled_rss()
    reset_peak()
    t.start()
    out = b.read()
    t.join()
    grown = peak() - base
    report(capsys, f"ring read() of a 128 MiB body of unknown length: peak RSS +{grown / MiB:.0f} MiB "
                   f"({grown / size:.2f}x the body)")
    assert len(out) == size and out.count(b"r") == size
    assert grown < 1.3 * size
