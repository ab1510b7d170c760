"""Bad input: each gives the documented Python exception and the buffer stays usable."""

import io

import pytest

import bodypipe


def fresh():
    w, b = bodypipe.pipe()
    w.write(b"0123456789\nabc")
    return w, b


def still_usable(w, b):
    w.write(b"!")
    w.close()
    assert b.read() == b"0123456789\nabc!"


@pytest.mark.parametrize("bad", ["10", 1.5, b"1", [1], object()])
@pytest.mark.parametrize("method", ["read", "read1", "readline", "readlines", "read_nonblock"])
def test_non_integer_size_is_type_error(method, bad):
    w, b = fresh()
    with pytest.raises(TypeError):
        getattr(b, method)(bad)
    still_usable(w, b)


def test_index_objects_are_accepted_as_sizes():
    class Idx:
        def __index__(self):
            return 3

    b = bodypipe.PyBuffer.from_bytes(b"abcdef")
    assert b.read(Idx()) == b"abc"
    assert b.read(True) == b"d"


@pytest.mark.parametrize("bad", ["x", 1, None, 3.0])
def test_write_non_bytes_like_is_type_error(bad):
    w, b = fresh()
    with pytest.raises(TypeError):
        w.write(bad)
    with pytest.raises(TypeError):
        w.try_write(bad)
    still_usable(w, b)


def test_readinto_bad_targets():
    w, b = fresh()
    with pytest.raises(TypeError):
        b.readinto(b"immutable")
    with pytest.raises(TypeError):
        b.readinto("str")
    with pytest.raises(TypeError):
        b.readinto(None)
    still_usable(w, b)


@pytest.mark.parametrize("whence", [3, -1, 100])
def test_bad_whence(whence):
    w, b = fresh()
    with pytest.raises(ValueError):
        b.seek(0, whence)
    assert b.tell() == 0
    still_usable(w, b)


def test_seek_type_errors():
    w, b = fresh()
    with pytest.raises(TypeError):
        b.seek("0")
    with pytest.raises(TypeError):
        b.seek(0, "1")
    with pytest.raises(TypeError):
        b.seek(1.0)
    still_usable(w, b)


@pytest.mark.parametrize(
    "offset,whence",
    [(-1, 0), (15, 0), (100, 1), (-1, 1), (0, 2), (-3, 2)],
)
def test_seek_outside_written_data(offset, whence):
    w, b = fresh()
    with pytest.raises(ValueError):
        b.seek(offset, whence)  # past the written data, before the start, or from the end before EOF
    assert b.tell() == 0
    still_usable(w, b)


def test_seek_past_end_after_eof():
    b = bodypipe.PyBuffer.from_bytes(b"abc")
    with pytest.raises(ValueError):
        b.seek(1, 2)
    with pytest.raises(ValueError):
        b.seek(-4, 2)
    assert b.read() == b"abc"


def test_write_after_close_is_value_error():
    w, b = bodypipe.pipe()
    w.write(b"abc")
    w.close()
    with pytest.raises(ValueError):
        w.write(b"more")
    with pytest.raises(ValueError):
        w.try_write(b"more")
    assert b.read() == b"abc"


def test_write_after_abort_is_value_error():
    w, b = bodypipe.pipe()
    w.abort("x")
    with pytest.raises(ValueError):
        w.write(b"more")


def test_write_past_content_length_stores_nothing():
    w, b = bodypipe.pipe(5)
    w.write(b"abc")
    with pytest.raises(ValueError):
        w.write(b"def")  # would be 6 > 5
    assert b.readable_amount() == 3
    w.write(b"de")
    assert b.read() == b"abcde"
    assert b.at_eof()
    with pytest.raises(ValueError):
        w.write(b"x")


def test_write_past_max_size():
    w, b = bodypipe.pipe(max_size=4)
    w.write(b"ab")
    with pytest.raises(ValueError):
        w.write(b"cde")
    w.write(b"cd")
    w.close()
    assert b.read() == b"abcd"


def test_write_after_reader_close_is_broken_pipe():
    w, b = bodypipe.pipe()
    b.close()
    with pytest.raises(BrokenPipeError):
        w.write(b"x")
    with pytest.raises(BrokenPipeError):
        w.try_write(b"x")


@pytest.mark.parametrize(
    "kwargs,exc",
    [
        ({"content_length": -1}, ValueError),
        ({"content_length": "10"}, TypeError),
        ({"content_length": 1.0}, TypeError),
        ({"max_buffered": 0}, ValueError),
        ({"max_buffered": -5}, ValueError),
        ({"max_size": -1}, ValueError),
        ({"segment_size": 0}, ValueError),
        ({"content_length": 100, "max_size": 10}, ValueError),
        # A declared length beyond any size is refused as too large (py_buffer:new/1 answers
        # {error, too_large}); it used to be an OverflowError here.
        ({"content_length": 2**70}, ValueError),
        ({"segment_size": 2**70}, ValueError),
    ],
)
def test_pipe_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        bodypipe.pipe(**kwargs)


def test_pipe_limits_beyond_any_size_mean_no_limit():
    """As in py_buffer:new/1 (both bindings decode options in bodypipe_python::options): a limit
    above 2**64 - 1 is one no body reaches, not an error (it used to be OverflowError here and
    accepted there)."""
    w, b = bodypipe.pipe(max_size=2**70, max_buffered=2**70, content_length=3)
    w.write(b"abc")
    assert b.read() == b"abc"


def test_pipe_keywords_only():
    with pytest.raises(TypeError):
        bodypipe.pipe(None, 100)


def test_find_bad_needles():
    w, b = fresh()
    with pytest.raises(TypeError):
        b.find("str")
    with pytest.raises(ValueError):
        b.find(256)
    with pytest.raises(TypeError):
        b.find(b"a", "0")
    assert b.find(b"abc") == 11
    still_usable(w, b)


def test_memoryview_writable_request_refused():
    b = bodypipe.PyBuffer.from_bytes(b"abc")
    import ctypes

    with pytest.raises((TypeError, BufferError)):
        ctypes.c_char.from_buffer(b)  # requests a writable buffer
    assert b.read() == b"abc"


def test_abort_reason_must_be_str():
    w, b = fresh()
    with pytest.raises(TypeError):
        w.abort(123)
    still_usable(w, b)


def test_fileno_leaves_buffer_usable():
    w, b = fresh()
    with pytest.raises(io.UnsupportedOperation):
        b.fileno()
    still_usable(w, b)
