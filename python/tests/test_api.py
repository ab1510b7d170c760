"""The PyBuffer / Writer behaviours of issue 3, one by one."""

import ctypes
import io
import threading

import pytest

import bodypipe
from conftest import feed, until


# --- creating buffers -----------------------------------------------------------------------


def test_pipe_returns_writer_and_buffer():
    w, b = bodypipe.pipe()
    assert isinstance(w, bodypipe.Writer)
    assert isinstance(b, bodypipe.PyBuffer)
    assert not w.closed and not b.closed
    assert b.content_length is None


def test_from_bytes_is_complete():
    b = bodypipe.PyBuffer.from_bytes(b"hello")
    assert b.readable_amount() == 5
    assert b.read() == b"hello"
    assert b.at_eof()
    assert b.read() == b""
    assert not b.closed  # writer EOF does not set closed


def test_from_bytes_accepts_any_bytes_like():
    assert bodypipe.PyBuffer.from_bytes(bytearray(b"ab")).read() == b"ab"
    assert bodypipe.PyBuffer.from_bytes(memoryview(b"xabcx")[1:4]).read() == b"abc"
    assert bodypipe.PyBuffer.from_bytes(b"").read() == b""


def test_test_create_holds_data_not_at_eof():
    b = bodypipe.PyBuffer._test_create(b"abc\ndef")
    assert b.readable_amount() == 7
    assert not b.at_eof()
    assert b.read_nonblock() == b"abc\ndef"
    assert not b.at_eof()
    b.settimeout(0.05)
    with pytest.raises(TimeoutError):
        b.read(1)  # no writer can add to it and it is not at EOF
    b.close()
    assert b.at_eof()
    assert b.read() == b""


def test_test_create_close_then_read_like_reference():
    b = bodypipe.PyBuffer._test_create(b"line1\nline2\n")
    b.close()
    assert b.closed
    assert list(b) == [b"line1\n", b"line2\n"]


def test_test_create_content_length():
    b = bodypipe.PyBuffer._test_create(b"abcd", content_length=4)
    assert b.content_length == 4
    assert b.read() == b"abcd"
    assert b.at_eof()


def test_writer_context_manager_closes():
    w, b = bodypipe.pipe()
    with w:
        w.write(b"abc")
    assert w.closed
    assert b.read() == b"abc"


def test_writer_context_manager_aborts_on_exception():
    w, b = bodypipe.pipe()
    with pytest.raises(RuntimeError):
        with w:
            w.write(b"abc")
            raise RuntimeError("upstream died")
    assert w.closed
    assert b.read(3) == b"abc"
    with pytest.raises(bodypipe.BodyAborted) as ei:
        b.read(1)
    assert "upstream died" in ei.value.reason
    assert "RuntimeError" in str(ei.value)


def test_write_returns_length_and_accepts_bytes_like():
    w, b = bodypipe.pipe()
    assert w.write(b"ab") == 2
    assert w.write(bytearray(b"cd")) == 2
    assert w.write(memoryview(b"ef")) == 2
    assert w.write(b"") == 0
    assert w.written == 6
    assert w.buffered == 6
    w.close()
    assert b.read() == b"abcdef"


def test_writer_close_twice_and_abort_after_close_are_noops():
    w, b = bodypipe.pipe()
    w.write(b"x")
    w.close()
    w.close()
    w.abort("late")
    assert b.read() == b"x"


def test_dropping_writer_aborts():
    w, b = bodypipe.pipe()
    w.write(b"partial")
    del w
    assert b.read(7) == b"partial"
    with pytest.raises(bodypipe.BodyAborted) as ei:
        b.read()
    assert ei.value.reason == "writer dropped"


# --- read semantics ---------------------------------------------------------------------------


def test_read_all_waits_for_eof_with_unknown_length():
    w, b = bodypipe.pipe()
    t = feed(w, [b"a" * 10, b"b" * 10, b"c" * 10], delay=0.02)
    assert b.read() == b"a" * 10 + b"b" * 10 + b"c" * 10
    t.join()


@pytest.mark.parametrize("arg", [(), (-1,), (None,), (-5,)])
def test_read_all_spellings(arg):
    w, b = bodypipe.pipe()
    t = feed(w, [b"12", b"34"], delay=0.01)
    assert b.read(*arg) == b"1234"
    t.join()


def test_read_n_is_exact_unless_eof():
    w, b = bodypipe.pipe()
    t = feed(w, [b"ab", b"cd", b"ef", b"gh"], delay=0.02)
    assert b.read(5) == b"abcde"
    assert b.read(100) == b"fgh"  # EOF first
    assert b.read(1) == b""
    t.join()


def test_read_content_length_idiom_never_short():
    body = bytes(range(256)) * 100
    w, b = bodypipe.pipe(len(body))
    t = feed(w, [body[i : i + 777] for i in range(0, len(body), 777)], delay=0.0005)
    assert b.read(len(body)) == body
    assert b.at_eof()
    t.join()


def test_read_zero_returns_at_once():
    # Nothing is ever written and the writer stays open: a read(0) that waited for data would
    # raise TimeoutError here instead of returning.
    w, b = bodypipe.pipe()
    b.settimeout(5)
    assert b.read(0) == b""
    assert b.readable_amount() == 0 and not b.at_eof()
    w.close()


def test_read1_returns_what_is_there():
    w, b = bodypipe.pipe()
    w.write(b"abc")
    assert b.read1(100) == b"abc"
    w.write(b"de")
    assert b.read1() == b"de"
    assert b.read_nonblock() == b""  # nothing there: read1 would wait
    w.close()
    assert b.read1(10) == b""


def test_read1_blocks_for_first_byte():
    w, b = bodypipe.pipe()
    t = feed(w, [b"xyz"], delay=0.05)
    assert b.read1(10) == b"xyz"
    t.join()


def test_readinto_returns_at_least_one_byte():
    w, b = bodypipe.pipe()
    t = feed(w, [b"hello"], delay=0.05, close=False)
    ba = bytearray(10)
    n = b.readinto(ba)
    assert n == 5 and ba[:5] == b"hello"
    t.join()
    w.close()
    assert b.readinto(ba) == 0


def test_readinto_memoryview_and_array():
    import array

    b = bodypipe.PyBuffer.from_bytes(b"abcdefgh")
    ba = bytearray(4)
    assert b.readinto(memoryview(ba)) == 4
    assert ba == b"abcd"
    arr = array.array("b", [0] * 2)
    assert b.readinto1(arr) == 2
    assert arr.tobytes() == b"ef"
    assert b.readinto(bytearray(0)) == 0
    assert b.read() == b"gh"


def test_readline_and_size():
    b = bodypipe.PyBuffer.from_bytes(b"first line\nsecond\nlast")
    assert b.readline(5) == b"first"
    assert b.readline() == b" line\n"
    assert b.readline(-1) == b"second\n"
    assert b.readline(None) == b"last"
    assert b.readline() == b""
    assert b.readline(0) == b""


def test_readline_waits_for_newline():
    w, b = bodypipe.pipe()
    t = feed(w, [b"par", b"tial", b" line\nnext"], delay=0.03)
    assert b.readline() == b"partial line\n"
    assert b.readline() == b"next"
    t.join()


LONG = 256 * 1024  # lines longer than this are scanned and copied with the GIL released


@pytest.mark.parametrize("mode", ["complete", "streamed", "ring"])
def test_long_lines(mode):
    """Lines above the GIL-held copy limit, alone, next to short ones, cut by a size, at EOF
    without a newline: the same results as io.BytesIO, whichever path (in place, GIL released,
    or consumed as it arrives in ring mode) reads them."""
    lines = [b"a" * (LONG + 1) + b"\n", b"b\n", b"c" * (3 * LONG) + b"\n", b"d" * LONG + b"\n", b"e" * (LONG + 7)]
    data = b"".join(lines)
    sizes = [None, None, LONG + 100, None, -1, 5, None, None]

    def make():
        if mode == "complete":
            return bodypipe.PyBuffer.from_bytes(data)
        # ring: max_buffered below the longest line, so that one is consumed as it arrives.
        w, b = bodypipe.pipe(max_buffered=2 * LONG) if mode == "ring" else bodypipe.pipe()
        b.settimeout(20)
        feed(w, [data[i : i + 65536] for i in range(0, len(data), 65536)], delay=0.0005)
        return b

    b, ref = make(), io.BytesIO(data)
    for size in sizes:
        assert b.readline(size) == ref.readline(size)
    assert b.readline() == b""
    b = make()
    assert list(b) == lines


def test_readlines_and_hint():
    data = b"a\nbb\nccc\ndddd\n"
    assert bodypipe.PyBuffer.from_bytes(data).readlines() == [b"a\n", b"bb\n", b"ccc\n", b"dddd\n"]
    assert bodypipe.PyBuffer.from_bytes(data).readlines(3) == [b"a\n", b"bb\n"]
    assert bodypipe.PyBuffer.from_bytes(data).readlines(-1) == [b"a\n", b"bb\n", b"ccc\n", b"dddd\n"]
    assert bodypipe.PyBuffer.from_bytes(data).readlines(0) == [b"a\n", b"bb\n", b"ccc\n", b"dddd\n"]


def test_iteration():
    w, b = bodypipe.pipe()
    t = feed(w, [b"one\ntw", b"o\n", b"three"], delay=0.01)
    assert [line for line in b] == [b"one\n", b"two\n", b"three"]
    t.join()
    assert iter(b) is b


def test_read_nonblock_readable_amount_at_eof():
    w, b = bodypipe.pipe()
    assert b.read_nonblock() == b""
    assert b.readable_amount() == 0
    w.write(b"abcdef")
    assert b.readable_amount() == 6
    assert b.read_nonblock(4) == b"abcd"
    assert b.read_nonblock() == b"ef"
    assert not b.at_eof()
    w.close()
    assert b.at_eof()
    assert b.read_nonblock() == b""


def test_peek_does_not_consume():
    w, b = bodypipe.pipe(segment_size=4)
    w.write(b"abcdefghij")  # spans three segments
    assert b.peek(6) == b"abcdef"
    assert b.peek() == b"abcdefghij"
    assert b.read(3) == b"abc"
    assert b.peek(2) == b"de"
    w.close()
    b.read()
    assert b.peek() == b""


def test_readall_flush_isatty_readable_writable_seekable():
    b = bodypipe.PyBuffer.from_bytes(b"xyz")
    assert b.readable() is True
    assert b.writable() is False
    assert b.seekable() is True
    assert b.isatty() is False
    assert b.flush() is None
    assert b.readall() == b"xyz"


def test_fileno_unsupported():
    b = bodypipe.PyBuffer.from_bytes(b"")
    with pytest.raises(io.UnsupportedOperation):
        b.fileno()


def test_truthiness_and_len():
    w, b = bodypipe.pipe()
    assert b.readable_amount() == 0
    assert bool(b) is True
    w.write(b"abc")
    assert b.readable_amount() == 3
    b.read(2)
    assert b.readable_amount() == 1
    w.close()


def test_repr_is_useful():
    w, b = bodypipe.pipe(10)
    w.write(b"abc")
    r = repr(b)
    assert "PyBuffer" in r and "available=3" in r and "content_length=10" in r
    assert "Writer" in repr(w)
    w.abort("gone")
    assert "gone" in repr(b)


def test_context_manager_closes():
    w, b = bodypipe.pipe()
    w.write(b"data")
    with b as f:
        assert f is b
    assert b.closed
    assert b.read() == b"data"  # data already written can still be read


def test_registered_as_raw_io():
    b = bodypipe.PyBuffer.from_bytes(b"")
    assert isinstance(b, io.RawIOBase)
    assert isinstance(b, io.IOBase)


# --- seek / tell ------------------------------------------------------------------------------


def test_seek_tell():
    w, b = bodypipe.pipe()
    w.write(b"0123456789")
    assert b.tell() == 0
    assert b.read(4) == b"0123"
    assert b.tell() == 4
    assert b.seek(0) == 0
    assert b.read(2) == b"01"
    assert b.seek(3, 1) == 5
    assert b.read(1) == b"5"
    assert b.seek(-2, io.SEEK_CUR) == 4
    with pytest.raises(ValueError):
        b.seek(-1, 2)  # from the end before EOF
    w.close()
    assert b.seek(-3, 2) == 7
    assert b.read() == b"789"
    assert b.seek(0, 2) == 10


def test_seek_ring_mode_window():
    w, b = bodypipe.pipe(max_buffered=64, segment_size=16)
    for _ in range(4):
        w.write(b"x" * 16)
    b.read(48)
    with pytest.raises(ValueError):
        b.seek(0)  # recycled: before the retained window
    assert b.seek(-8, 1) == 40
    w.close()


# --- find -------------------------------------------------------------------------------------


def test_find_relative_to_position_and_across_segments():
    w, b = bodypipe.pipe(segment_size=8)
    w.write(b"--bound")
    w.write(b"ary\r\nbody--boundary--")
    assert b.find(b"boundary") == 2
    assert b.find(b"\n") == 11
    assert b.find(ord("\r")) == 10
    assert b.find(b"boundary", 3) == 18
    assert b.find(b"boundary", 3, 20) == -1
    assert b.find(b"nope") == -1
    assert b.find(b"--", -4) == b.readable_amount() - 2
    b.read(5)
    assert b.find(b"boundary") == 13
    assert b.find(b"") == 0
    w.close()


# --- memoryview -------------------------------------------------------------------------------


def test_memoryview_properties():
    b = bodypipe.PyBuffer.from_bytes(b"hello world")
    mv = memoryview(b)
    assert mv.readonly
    assert mv.ndim == 1
    assert mv.format == "B"
    assert mv.itemsize == 1
    assert mv.shape == (11,)
    assert mv[0] == ord("h")
    assert bytes(mv[6:]) == b"world"
    with pytest.raises(TypeError):
        mv[0] = 1
    mv.release()


def test_memoryview_exposes_unread_bytes_only():
    b = bodypipe.PyBuffer.from_bytes(b"abcdef")
    b.read(2)
    assert bytes(memoryview(b)) == b"cdef"
    assert b.read() == b"cdef"  # taking a view consumes nothing


def test_memoryview_survives_writes_and_buffer_drop():
    w, b = bodypipe.pipe()
    w.write(b"first")
    mv = memoryview(b)
    for _ in range(1000):
        w.write(b"more data " * 10)  # writes never fail because a view is held
    del b
    import gc

    gc.collect()
    assert bytes(mv) == b"first"
    w.close()


def test_memoryview_coalesces_across_segments():
    w, b = bodypipe.pipe(segment_size=4)
    w.write(b"abcdefghij")
    assert len(b.views()) == 3
    mv = memoryview(b)
    assert bytes(mv) == b"abcdefghij"
    w.close()


def test_views_are_zero_copy_per_segment():
    w, b = bodypipe.pipe(segment_size=4)
    w.write(b"abcdefghij")
    b.read(1)
    vs = b.views()
    assert [bytes(v) for v in vs] == [b"bcd", b"efgh", b"ij"]
    assert all(v.readonly for v in vs)
    w.close()
    del b
    assert bytes(vs[1]) == b"efgh"


class _PyBuffer(ctypes.Structure):
    # CPython's Py_buffer; `obj` as a plain pointer so ctypes never touches its refcount.
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.c_void_p),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    ]


def address(obj):
    """The address of the first byte of `obj`'s buffer (read-only exports too, which ctypes'
    from_buffer refuses)."""
    view = _PyBuffer()
    get, release = ctypes.pythonapi.PyObject_GetBuffer, ctypes.pythonapi.PyBuffer_Release
    get.argtypes, get.restype = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int], ctypes.c_int
    release.argtypes, release.restype = [ctypes.POINTER(_PyBuffer)], None
    if get(obj, ctypes.byref(view), 0) != 0:  # PyBUF_SIMPLE
        raise BufferError("PyObject_GetBuffer failed")
    try:
        return view.buf
    finally:
        release(ctypes.byref(view))


def test_memoryview_zero_copy_within_one_segment():
    # Unread bytes that lie in one segment are exported as the segment itself: exports made at
    # different times, while writes go on, start at the same address (a copy would be a fresh
    # allocation each time), and reading moves that start by what was read. (Segments follow
    # the bytes written, whatever length is declared; `segment_size` fixes them for this test.)
    w, b = bodypipe.pipe(100_000, segment_size=100_000)
    for i in range(50):
        w.write(bytes([i % 256]) * 1000)
    mv1 = memoryview(b)
    for i in range(50, 100):
        w.write(bytes([i % 256]) * 1000)
    mv2 = memoryview(b)
    (seg,) = b.views()
    assert len(mv1) == 50_000 and len(mv2) == len(seg) == 100_000
    assert address(mv1) == address(mv2) == address(seg) == address(b)
    assert b.read(1000) == b"\0" * 1000
    mv3 = memoryview(b)
    assert address(mv3) == address(mv1) + 1000
    assert bytes(mv3[:1000]) == b"\1" * 1000 and mv1[0] == 0  # the old view is still valid


def test_from_bytes_is_one_segment_and_zero_copy():
    data = bytes(range(256)) * 4000
    b = bodypipe.PyBuffer.from_bytes(data)
    (seg,) = b.views()
    assert address(memoryview(b)) == address(memoryview(b)) == address(seg)
    assert bytes(memoryview(b)) == data


def test_declared_length_streamed_is_several_segments():
    # A declared length is only a claim: storage grows with the bytes (4 KiB doubling), so a
    # 100 kB body written in 1 kB pieces is several segments, and memoryview(buf) of it a copy.
    w, b = bodypipe.pipe(100_000)
    for i in range(100):
        w.write(bytes([i % 256]) * 1000)
    assert len(b.views()) > 1
    assert bytes(memoryview(b)) == b"".join(bytes([i % 256]) * 1000 for i in range(100))


def test_memoryview_spanning_segments_is_a_copy():
    # The other side of the test above, showing that `address` tells copies apart: bytes in
    # several segments are coalesced into a fresh copy for each export.
    w, b = bodypipe.pipe(segment_size=8)
    w.write(b"0123456789abcdef0123")
    assert len(b.views()) > 1
    mv1, mv2 = memoryview(b), memoryview(b)
    assert bytes(mv1) == bytes(mv2) == b"0123456789abcdef0123"
    assert address(mv1) != address(mv2)


def test_memoryview_ring_mode_write_continues():
    w, b = bodypipe.pipe(max_buffered=32, segment_size=8)
    w.write(b"A" * 32)
    mv = memoryview(b)
    assert b.read(32) == b"A" * 32
    # The reader freed room: these writes may recycle segments, but never the one the view pins.
    for _ in range(20):
        assert w.try_write(b"B" * 8)
        b.read(8)
    assert bytes(mv) == b"A" * 32
    w.close()


# --- abort --------------------------------------------------------------------------------------


def test_abort_after_data_is_read():
    w, b = bodypipe.pipe()
    w.write(b"line1\nline2")
    w.abort("client disconnected")
    assert b.readline() == b"line1\n"
    # The last line has no newline and never will: no line, but the abort, with its bytes.
    with pytest.raises(bodypipe.BodyAborted) as ei:
        b.readline()
    assert ei.value.partial == b"line2"
    with pytest.raises(bodypipe.BodyAborted):
        b.at_eof()  # drained: the end of an aborted body is an error, not EOF
    with pytest.raises(bodypipe.BodyAborted) as ei:
        b.readline()
    assert ei.value.partial == b""
    assert isinstance(ei.value, ConnectionAbortedError)
    assert ei.value.reason == "client disconnected"
    assert str(ei.value) == "client disconnected"
    with pytest.raises(bodypipe.BodyAborted):
        b.read(10)  # raised again on every read


def test_abort_read_all_does_not_pass_truncated_body():
    w, b = bodypipe.pipe()
    t = feed(w, [b"abc", b"def"], delay=0.01, abort="reset")
    with pytest.raises(bodypipe.BodyAborted) as ei:
        b.read()
    assert ei.value.partial == b"abcdef"
    t.join()


def test_abort_read_n_short_raises_with_partial():
    w, b = bodypipe.pipe(100)
    t = feed(w, [b"abc"], delay=0.02, abort="reset")
    with pytest.raises(bodypipe.BodyAborted) as ei:
        b.read(100)
    assert ei.value.partial == b"abc"
    t.join()


def test_abort_polling_loop_raises_after_the_data():
    w, b = bodypipe.pipe()
    w.write(b"xy")
    w.abort("bye")
    chunks = []
    with pytest.raises(bodypipe.BodyAborted) as ei:
        while not b.at_eof():
            if b.readable_amount():
                chunks.append(b.read_nonblock(4096))
    assert ei.value.reason == "bye"
    assert b"".join(chunks) == b"xy"
    with pytest.raises(bodypipe.BodyAborted):
        b.read_nonblock()


def test_body_aborted_constructible_from_python():
    e = bodypipe.BodyAborted("why")
    assert e.reason == "why"
    assert e.partial == b""  # the stub's `partial: bytes` holds for every instance
    assert issubclass(bodypipe.BodyAborted, ConnectionAbortedError)


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.read(),
        lambda b: b.read(10),
        lambda b: b.readall(),
        lambda b: b.read1(10),
        lambda b: b.read_nonblock(),
        lambda b: b.readinto(bytearray(10)),
        lambda b: b.readline(),
        lambda b: b.readlines(),
        lambda b: next(b),
    ],
)
@pytest.mark.parametrize("mode", [{}, {"content_length": 100}, {"max_buffered": 8}])
def test_body_aborted_partial_always_present(call, mode):
    """A read that consumed nothing before the abort still has `partial` (b''), on the instance
    (not only the class default), as TimeoutError.partial."""
    w, b = bodypipe.pipe(**mode)
    w.write(b"abc")
    w.abort("gone")
    assert b.read(3) == b"abc"
    with pytest.raises(bodypipe.BodyAborted) as ei:
        call(b)
    assert ei.value.partial == b""
    assert "partial" in vars(ei.value)
    assert ei.value.reason == "gone"


def test_readinto_read1_return_data_before_raising():
    w, b = bodypipe.pipe()
    w.write(b"abc")
    w.abort("x")
    buf = bytearray(10)
    assert b.readinto(buf) == 3
    with pytest.raises(bodypipe.BodyAborted):
        b.readinto(buf)
    with pytest.raises(bodypipe.BodyAborted):
        b.read1(5)


# --- timeouts -----------------------------------------------------------------------------------


def test_settimeout_gettimeout():
    b = bodypipe.PyBuffer.from_bytes(b"")
    assert b.gettimeout() is None
    b.settimeout(1.5)
    assert b.gettimeout() == 1.5
    b.settimeout(None)
    assert b.gettimeout() is None
    with pytest.raises(ValueError):
        b.settimeout(-1)
    with pytest.raises(TypeError):
        b.settimeout("1")


def test_timeout_loses_no_data_read_n():
    w, b = bodypipe.pipe()
    b.settimeout(0.1)
    w.write(b"abc")
    with pytest.raises(TimeoutError) as ei:
        b.read(10)
    assert ei.value.partial == b""  # nothing consumed: left unread
    assert b.read_nonblock() == b"abc"
    w.close()


def test_timeout_readline_loses_no_data():
    w, b = bodypipe.pipe()
    b.settimeout(0.05)
    w.write(b"no newline yet")
    with pytest.raises(TimeoutError):
        b.readline()
    w.write(b"\n")
    assert b.readline() == b"no newline yet\n"
    w.close()


def test_timeout_ring_mode_partial_attached():
    # Beyond the high-water mark read(n) must consume as it goes; a timeout then hands back
    # what it took as `partial`.
    w, b = bodypipe.pipe(max_buffered=8, segment_size=8)
    w.write(b"12345678")
    b.settimeout(0.1)
    with pytest.raises(TimeoutError) as ei:
        b.read(20)
    assert ei.value.partial == b"12345678"
    w.close()


@pytest.mark.parametrize("content_length", [None, 10])
def test_timeout_ring_mode_read_all_partial_attached(content_length):
    # Ring-mode read() consumes as it goes, even for a body well below the high-water mark (the
    # README lists it): with or without a declared length, a timeout hands the bytes back.
    w, b = bodypipe.pipe(content_length, max_buffered=100)
    w.write(b"abc")
    b.settimeout(0.05)
    with pytest.raises(TimeoutError) as ei:
        b.read()
    assert ei.value.partial == b"abc"
    w.write(b"def")
    w.abort("gone")
    with pytest.raises(bodypipe.BodyAborted) as ei:
        b.readall()
    assert ei.value.partial == b"def"


def test_readlines_failure_keeps_the_lines_on_partial():
    w, b = bodypipe.pipe()
    w.write(b"a\nb\nhalf")
    b.settimeout(0.05)
    with pytest.raises(TimeoutError) as ei:
        b.readlines()
    assert ei.value.partial == b"a\nb\n"  # consumed; the incomplete line is still unread
    w.write(b" line\nc\n")
    w.abort("gone")
    with pytest.raises(bodypipe.BodyAborted) as ei:
        b.readlines()
    assert ei.value.partial == b"half line\nc\n"
    assert ei.value.reason == "gone"

    # Ring mode, a line longer than max_buffered: its part taken so far follows the lines.
    w, b = bodypipe.pipe(max_buffered=8, segment_size=8)
    w.write(b"x\n")
    w.write(b"0123456789")
    b.settimeout(0.1)
    with pytest.raises(TimeoutError) as ei:
        b.readlines()
    assert ei.value.partial == b"x\n0123456789"
    w.close()


def test_timeout_zero_returns_present_data():
    w, b = bodypipe.pipe()
    b.settimeout(0)
    w.write(b"ab")
    assert b.read1(10) == b"ab"
    with pytest.raises(TimeoutError):
        b.read1(10)
    w.close()


# --- close (reader hang-up) ---------------------------------------------------------------------


def test_close_unblocks_reads_and_breaks_writer():
    w, b = bodypipe.pipe()
    w.write(b"abc")
    b.close()
    b.close()  # twice is fine
    assert b.closed
    assert b.read() == b"abc"
    assert b.read() == b""
    assert b.readline() == b""
    assert w.reader_closed
    with pytest.raises(BrokenPipeError):
        w.write(b"more")


def test_close_wakes_blocked_reader():
    w, b = bodypipe.pipe()
    out = []
    t = threading.Thread(target=lambda: out.append(b.read()))
    t.start()
    until("the read parks", lambda: b.stats().reader_waiting)
    b.close()
    t.join(5)
    assert not t.is_alive()
    assert out == [b""]
    w.close()


def test_writer_eof_does_not_set_closed():
    w, b = bodypipe.pipe()
    w.close()
    assert b.read() == b""
    assert not b.closed


# --- ring mode writer -----------------------------------------------------------------------------


def test_ring_mode_try_write_and_blocking_write():
    w, b = bodypipe.pipe(max_buffered=16, segment_size=8)
    assert w.try_write(b"x" * 16)
    assert not w.try_write(b"y")  # at the high-water mark: nothing stored
    assert b.readable_amount() == 16
    done = threading.Event()

    def writer():
        w.write(b"z" * 4)  # waits (GIL released) until the reader makes room
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    until("the write parks", lambda: b.stats().writer_waiting)
    assert not done.is_set()
    assert b.read(16) == b"x" * 16
    assert done.wait(5)
    t.join()
    w.close()
    assert b.read() == b"zzzz"


def test_ring_mode_blocked_writer_gets_broken_pipe_on_reader_close():
    w, b = bodypipe.pipe(max_buffered=4)
    w.write(b"abcd")
    errs = []

    def writer():
        try:
            w.write(b"e")
        except BrokenPipeError as e:
            errs.append(e)

    t = threading.Thread(target=writer)
    t.start()
    until("the write parks", lambda: b.stats().writer_waiting)
    b.close()
    t.join(5)
    assert not t.is_alive()
    assert len(errs) == 1


def test_ring_mode_read_larger_than_mark():
    w, b = bodypipe.pipe(max_buffered=1024)
    data = bytes(range(256)) * 64
    t = feed(w, [data[i : i + 100] for i in range(0, len(data), 100)])
    assert b.read(len(data) - 10) == data[:-10]
    assert b.read() == data[-10:]
    t.join()


def test_ring_mode_read_all_unknown_length():
    w, b = bodypipe.pipe(max_buffered=100)
    data = b"0123456789" * 500
    t = feed(w, [data[i : i + 37] for i in range(0, len(data), 37)])
    assert b.read() == data
    t.join()


def test_ring_mode_read_all_known_length():
    data = b"q" * 5000
    w, b = bodypipe.pipe(len(data), max_buffered=100)
    t = feed(w, [data[i : i + 37] for i in range(0, len(data), 37)])
    assert b.read() == data
    t.join()


def test_ring_mode_huge_read_n_returns_at_eof():
    # read(n) far beyond anything that will arrive must not try to allocate n bytes.
    w, b = bodypipe.pipe(max_buffered=1024)
    t = feed(w, [b"a" * 1000] * 5, delay=0.005)
    assert b.read(2**40) == b"a" * 5000
    t.join()


def test_unbounded_huge_read_n_returns_at_eof():
    w, b = bodypipe.pipe()
    t = feed(w, [b"b" * 1000] * 5, delay=0.005)
    assert b.read(2**40) == b"b" * 5000
    t.join()


def test_ring_mode_line_longer_than_mark():
    # The writer cannot add a byte while max_buffered bytes are unread, so a line that long can
    # only be read if the reader consumes it as it arrives (core read_until in ring mode).
    w, b = bodypipe.pipe(max_buffered=64, segment_size=16)
    b.settimeout(10)  # a deadlock becomes a TimeoutError instead of a hang
    line = b"L" * 1000 + b"\n"
    t = feed(w, [line[i : i + 10] for i in range(0, len(line), 10)] + [b"tail"])
    assert b.readline() == line
    assert list(b) == [b"tail"]
    t.join(10)
