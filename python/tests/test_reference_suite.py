"""The reference implementation's own test suite (py_buffer_SUITE, Python side), ported.

The Erlang calls become Writer calls. One deliberate difference: the reference's
`PyBuffer._test_create(b'Hello, World!').read()` (no close) returned what was available because
its read() stopped early on unknown lengths; here read() means "up to EOF", so a _test_create
buffer must be close()d first (as all its other tests do) or it waits, honouring settimeout().
"""

import asyncio
import gc
import sys
import threading
import time

import pytest

import bodypipe
from bodypipe import PyBuffer


def test_create_buffer():
    w, b = bodypipe.pipe()
    assert isinstance(w, bodypipe.Writer) and isinstance(b, PyBuffer)
    assert b.content_length is None and b.readable_amount() == 0
    assert not b.at_eof() and not b.closed and not w.closed
    w.close()
    assert w.closed and not b.closed  # the writer's EOF is not the reader's close()
    assert b.at_eof() and b.read() == b""

    w, b = bodypipe.pipe(1024)
    assert b.content_length == 1024 and b.readable_amount() == 0 and not b.at_eof()
    w.write(b"x" * 1024)  # reaching the declared length is EOF
    assert b.readable_amount() == 1024 and not b.at_eof()
    assert b.read() == b"x" * 1024 and b.at_eof()
    w.close()  # idempotent after the implicit EOF
    assert b.read() == b""


def test_write_read():
    w, b = bodypipe.pipe()
    w.write(b"Hello, ")
    w.write(b"World!")
    w.close()
    assert b.read() == b"Hello, World!"
    buf = PyBuffer._test_create(b"Hello, World!")
    buf.close()
    assert buf.read() == b"Hello, World!"


def test_test_create_read_without_close_waits():
    buf = PyBuffer._test_create(b"Hello, World!")
    buf.settimeout(0.05)
    with pytest.raises(TimeoutError):
        buf.read()
    assert buf.read_nonblock() == b"Hello, World!"  # nothing was lost


def test_readline():
    buf = PyBuffer._test_create(b"line1\nline2\nline3\n")
    buf.close()
    assert buf.readline() == b"line1\n"
    assert buf.readline() == b"line2\n"
    assert buf.readline() == b"line3\n"
    assert buf.readline() == b""


def test_readlines():
    buf = PyBuffer._test_create(b"a\nb\nc\n")
    buf.close()
    assert buf.readlines() == [b"a\n", b"b\n", b"c\n"]


def test_seek_tell():
    buf = PyBuffer._test_create(b"0123456789")
    buf.close()
    assert buf.tell() == 0
    assert buf.read(5) == b"01234"
    assert buf.tell() == 5
    assert buf.seek(0) == 0
    assert buf.tell() == 0
    assert buf.seek(3, 1) == 3
    assert buf.tell() == 3
    assert buf.seek(7) == 7
    assert buf.read() == b"789"


def test_find():
    buf = PyBuffer._test_create(b"hello world hello")
    assert buf.find(b"h") == 0
    assert buf.find(b"o") == 4
    assert buf.find(b"hello") == 0
    assert buf.find(b"world") == 6
    assert buf.find(b"hello", 1) == 12
    assert buf.find(b"xyz") == -1
    assert buf.find(b"") == 0
    assert buf.find(b"", 5) == 5


def test_memoryview():
    buf = PyBuffer._test_create(b"test data")
    mv = memoryview(buf)
    assert len(mv) == 9
    assert mv.readonly is True
    assert mv.ndim == 1
    assert bytes(mv) == b"test data"
    assert bytes(mv[:4]) == b"test"
    assert bytes(mv[5:]) == b"data"
    mv.release()


def test_iterator():
    buf = PyBuffer._test_create(b"line1\nline2\nline3\n")
    buf.close()
    assert list(buf) == [b"line1\n", b"line2\n", b"line3\n"]


def test_closed_buffer():
    buf = PyBuffer._test_create(b"data")
    buf.close()
    assert buf.closed is True
    assert buf.read() == b"data"
    assert buf.read() == b""


def test_empty_buffer():
    buf = PyBuffer._test_create(b"")
    buf.close()
    assert buf.read() == b""
    assert buf.readline() == b""
    assert buf.readlines() == []
    assert buf.readable_amount() == 0
    assert buf.readable() is True
    assert buf.writable() is False
    assert buf.seekable() is True


def test_pass_to_python():
    w, buf = bodypipe.pipe()
    w.write(b"chunk1")
    w.write(b"chunk2")
    w.close()

    def read_buffer(buf):
        return buf.read()

    assert read_buffer(buf) == b"chunk1chunk2"


def test_gc_refcount():
    writers = []
    for _ in range(100):
        buf = PyBuffer._test_create(b"x" * 1000)
        buf.close()
        assert buf.read() == b"x" * 1000  # close() keeps what was written readable
        assert sys.getrefcount(buf) <= 2  # the name and the argument: no hidden references
        w, b = bodypipe.pipe()
        w.write(b"y" * 1000)
        writers.append(w)
        del b  # the last reference: the reader is freed, which hangs up its side
    gc.collect()
    for w in writers:
        with pytest.raises(BrokenPipeError):  # so every reader was really freed
            w.write(b"z")

    buf = PyBuffer._test_create(b"test data")
    mv = memoryview(buf)
    data = bytes(mv[:4])
    mv.release()
    buf.close()
    assert data == b"test"
    assert buf.read() == b"test data"

    buf = PyBuffer._test_create(b"hello world")
    mv1 = memoryview(buf)
    mv2 = memoryview(buf)
    assert bytes(mv1[:5]) == b"hello"
    assert bytes(mv2[6:]) == b"world"
    mv1.release()
    mv2.release()
    buf.close()


def test_nonblock_read():
    buf = PyBuffer._test_create(b"hello world")
    assert buf.readable_amount() == 11
    assert buf.at_eof() is False
    assert buf.read_nonblock(5) == b"hello"
    assert buf.readable_amount() == 6
    assert buf.read_nonblock() == b" world"
    assert buf.readable_amount() == 0
    assert buf.read_nonblock() == b""
    buf.close()
    assert buf.at_eof() is True

    buf = PyBuffer._test_create(b"chunk1chunk2chunk3")
    buf.close()
    chunks = []
    while not buf.at_eof():
        if buf.readable_amount() > 0:
            chunks.append(buf.read_nonblock(6))
        else:
            break
    assert chunks == [b"chunk1", b"chunk2", b"chunk3"]


def test_asyncio_read_while_writing():
    w, buf = bodypipe.pipe()

    def writer():
        time.sleep(0.01)
        w.write(b"chunk1:")
        time.sleep(0.02)
        w.write(b"chunk2:")
        time.sleep(0.02)
        w.write(b"chunk3")
        time.sleep(0.01)
        w.close()

    async def async_buffer_reader(buf):
        chunks = []
        while not buf.at_eof():
            available = buf.readable_amount()
            if available > 0:
                chunks.append(buf.read_nonblock(available))
            else:
                await asyncio.sleep(0.005)
        return b"".join(chunks)

    t = threading.Thread(target=writer)
    t.start()
    loop = asyncio.new_event_loop()
    try:
        result = loop.run_until_complete(async_buffer_reader(buf))
    finally:
        loop.close()
    t.join()
    assert result == b"chunk1:chunk2:chunk3"
