"""How a body ends, as every read call sees it: no read path reports an aborted body, or one that
ended short of its declared length, as complete.

* After an abort, once the bytes written before it are consumed, every read raises
  `BodyAborted`, and so does `at_eof()` (which is True only at a clean end), so the reference
  doc's polling loop raises instead of returning a truncated body.
* A declared length is a promise: `Writer.close()` before it raises `IncompleteBody`, and the
  readers get `BodyAborted("incomplete body")` with the bytes on `partial`.
"""

import asyncio
import gc
import math
import threading
import weakref

import pytest

import bodypipe


async def read_buffer_async(buf):
    """Read from buffer without blocking the event loop."""
    chunks = []

    while not buf.at_eof():
        available = buf.readable_amount()
        if available > 0:
            # Read available data
            chunk = buf.read_nonblock(4096)
            chunks.append(chunk)
        else:
            # Yield to event loop, check again soon
            await asyncio.sleep(0.001)

    return b''.join(chunks)


@pytest.mark.parametrize("end", ["abort", "short close"])
def test_reference_polling_loop_raises_instead_of_truncating(end):
    """The reference doc's loop ("Async I/O Integration", verbatim above) on a body whose producer
    stops after 3,000 of 10,000 declared bytes: it raises; it returned 3,000 bytes before."""
    w, buf = bodypipe.pipe(content_length=10_000)

    def producer():
        for _ in range(3):
            w.write(b"p" * 1000)
        if end == "abort":
            w.abort("client disconnected")
        else:
            with pytest.raises(bodypipe.IncompleteBody):
                w.close()

    t = threading.Thread(target=producer)
    t.start()
    with pytest.raises(bodypipe.BodyAborted) as ei:
        asyncio.run(read_buffer_async(buf))
    t.join()
    assert ei.value.reason == ("client disconnected" if end == "abort" else "incomplete body")
    assert buf.tell() == 3000


def test_reference_polling_loop_still_ends_at_eof():
    w, buf = bodypipe.pipe(content_length=10_000)
    threading.Thread(target=lambda: [w.write(b"q" * 1000) for _ in range(10)]).start()
    assert asyncio.run(read_buffer_async(buf)) == b"q" * 10_000


def _aread(b, *args):
    return asyncio.run(b.aread(*args))


def _areadline(b):
    return asyncio.run(b.areadline())


def _areadexactly(b):
    return asyncio.run(b.areadexactly(3))


def _anext(b):
    async def first():
        async for line in b:
            return line
        return None

    return asyncio.run(first())


READS = {
    "read_nonblock": lambda b: b.read_nonblock(),
    "read_nonblock(n)": lambda b: b.read_nonblock(3),
    "read": lambda b: b.read(),
    "read(n)": lambda b: b.read(3),
    "readall": lambda b: b.readall(),
    "read1": lambda b: b.read1(),
    "read1(n)": lambda b: b.read1(3),
    "readinto": lambda b: b.readinto(bytearray(3)),
    "readinto1": lambda b: b.readinto1(bytearray(3)),
    "readline": lambda b: b.readline(),
    "readline(n)": lambda b: b.readline(3),
    "readlines": lambda b: b.readlines(),
    "next": lambda b: next(b),
    "list": list,
    "peek": lambda b: b.peek(),
    "at_eof": lambda b: b.at_eof(),
    "aread": _aread,
    "aread(n)": lambda b: _aread(b, 3),
    "areadline": _areadline,
    "areadexactly": _areadexactly,
    "async for": _anext,
}


@pytest.mark.parametrize("ring", [False, True], ids=["unbounded", "ring"])
@pytest.mark.parametrize("end", ["abort", "short close"])
@pytest.mark.parametrize("call", list(READS.values()), ids=list(READS))
def test_every_read_raises_once_the_data_is_consumed(call, end, ring):
    w, b = bodypipe.pipe(content_length=100, max_buffered=64 if ring else None)
    w.write(b"ab\ncd")
    if end == "abort":
        w.abort("gone")
    else:
        with pytest.raises(bodypipe.IncompleteBody):
            w.close()
    assert b.read(5) == b"ab\ncd"
    for _ in range(2):  # and again on the next call
        with pytest.raises(bodypipe.BodyAborted) as ei:
            call(b)
        assert ei.value.reason == ("gone" if end == "abort" else "incomplete body")
        assert ei.value.partial == b""


@pytest.mark.parametrize("call", ["read", "read(n)", "readline", "readlines", "areadline", "aread"])
def test_a_call_that_would_return_a_truncated_result_raises_with_it(call):
    """A call that asked for more than the aborted body holds (everything, n bytes, a line)
    raises at once, with the bytes it consumed on `partial`."""
    w, b = bodypipe.pipe()
    w.write(b"no newline")
    w.abort("gone")
    with pytest.raises(bodypipe.BodyAborted) as ei:
        {
            "read": lambda: b.read(),
            "read(n)": lambda: b.read(100),
            "readline": lambda: b.readline(),
            "readlines": lambda: b.readlines(),
            "areadline": lambda: _areadline(b),
            "aread": lambda: _aread(b),
        }[call]()
    assert ei.value.partial == b"no newline"
    with pytest.raises(bodypipe.BodyAborted) as ei:
        b.read()
    assert ei.value.partial == b""


def test_at_eof_and_peek_after_abort_with_data_left():
    w, b = bodypipe.pipe()
    w.write(b"xyz")
    w.abort("gone")
    assert b.at_eof() is False  # data is left: not the end yet
    assert b.peek() == b"xyz"  # peek consumes nothing
    assert b.read1(2) == b"xy"  # data first, as a file after a partial read
    assert b.peek() == b"z"
    assert b.read1() == b"z"
    with pytest.raises(bodypipe.BodyAborted):
        b.peek()
    with pytest.raises(bodypipe.BodyAborted):
        b.at_eof()


def test_short_close_is_incomplete_not_eof():
    w, b = bodypipe.pipe(content_length=10)
    with pytest.raises(bodypipe.IncompleteBody) as ei:
        with w:  # the README's producer pattern, a socket that ended early
            w.write(b"abc")
    assert isinstance(ei.value, ValueError)
    assert (ei.value.written, ei.value.expected) == (3, 10)
    assert str(ei.value) == "body closed after 3 of its 10 declared bytes"
    assert w.closed
    w.close()  # closing again is a no-op
    with pytest.raises(bodypipe.BodyAborted) as ei:
        b.read()
    assert ei.value.reason == "incomplete body"
    assert ei.value.partial == b"abc"
    with pytest.raises(bodypipe.BodyAborted):
        b.at_eof()
    assert "aborted" in repr(b)


def test_short_close_wakes_a_blocked_reader_with_the_abort():
    w, b = bodypipe.pipe(content_length=1000, max_buffered=64)
    b.settimeout(30)
    got = []

    def reader():
        try:
            b.read()
        except bodypipe.BodyAborted as e:
            got.append((e.reason, e.partial))

    t = threading.Thread(target=reader)
    t.start()
    w.write(b"x" * 100)
    with pytest.raises(bodypipe.IncompleteBody):
        w.close()
    t.join(30)
    assert got == [("incomplete body", b"x" * 100)]


def test_complete_and_undeclared_bodies_close_cleanly():
    w, b = bodypipe.pipe(content_length=3)
    with w:
        w.write(b"abc")
    assert b.read() == b"abc" and b.at_eof()
    w, b = bodypipe.pipe()
    with w:
        w.write(b"any length")
    assert b.read() == b"any length" and b.at_eof()
    w, b = bodypipe.pipe(content_length=0)
    w.close()
    assert b.read() == b"" and b.at_eof()


def test_reader_close_is_still_a_clean_end():
    w, b = bodypipe.pipe(content_length=10)
    w.write(b"ab")
    b.close()  # the application hangs up: its own choice, not a truncation
    assert b.read() == b"ab"
    assert b.at_eof()


def test_incomplete_body_constructible_from_python():
    e = bodypipe.IncompleteBody("short")
    assert isinstance(e, ValueError)
    assert (e.written, e.expected) == (0, 0)


def test_writer_reader_closed_after_the_writer_is_closed():
    w, b = bodypipe.pipe()
    b.close()
    w.close()
    assert w.reader_closed  # was False once the writer was closed
    w, b = bodypipe.pipe()
    w.close()
    assert not w.reader_closed
    b.close()
    assert w.reader_closed
    w, b = bodypipe.pipe()
    w.close()
    del b
    gc.collect()
    assert w.reader_closed  # the reader is gone: closed


def test_writer_does_not_keep_the_reader_open():
    w, b = bodypipe.pipe()
    w.write(b"x")
    del b
    gc.collect()
    with pytest.raises(BrokenPipeError):
        w.write(b"y")


def test_find_takes_none_bounds_like_bytes_find():
    data = b"hello world, hello"
    b = bodypipe.PyBuffer.from_bytes(data)
    for args in [(b"o", None, None), (b"o", None), (b"o", 5, None), (b"o", None, 5), (b"lo", -5, None),
                 (b"h", None, -1), (ord("w"), None, None)]:
        assert b.find(*args) == data.find(*args), args


def test_weak_references_and_finalizers():
    w, b = bodypipe.pipe()
    ref = weakref.ref(b)
    assert ref() is b
    finalized = []
    weakref.finalize(b, finalized.append, True)
    del b
    gc.collect()
    assert ref() is None and finalized == [True]
    with pytest.raises(BrokenPipeError):
        w.write(b"x")  # the reader went with it


@pytest.mark.parametrize("value", [math.inf, 1e300])
def test_settimeout_refuses_what_is_not_a_finite_timeout(value):
    """As `socket.settimeout`: a value that cannot be a timeout is an error, not a quiet "no
    timeout" (None says that)."""
    _, b = bodypipe.pipe()
    b.settimeout(1.0)
    with pytest.raises(OverflowError):
        b.settimeout(value)
    assert b.gettimeout() == 1.0  # unchanged
    b.settimeout(None)
    assert b.gettimeout() is None
    b.settimeout(1e9)  # large but finite: a timeout
    assert b.gettimeout() == 1e9
