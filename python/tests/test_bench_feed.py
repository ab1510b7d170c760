"""The benchmark-only feeder: a Rust thread that never holds the GIL writes the body."""

import hashlib

import pytest

import bodypipe


def expected(total: int, chunk: int) -> bytes:
    block = bytes((i * 31 + 7) & 0xFF for i in range(chunk))
    return (block * (total // chunk + 1))[: total - total % chunk] + block[: total % chunk]


@pytest.mark.parametrize("max_buffered", [None, 64 * 1024])
def test_feeds_exact_bytes_then_eof(max_buffered):
    total, chunk = 5 * 1024 * 1024 + 123, 65536
    w, buf = bodypipe.pipe(max_buffered=max_buffered)
    bodypipe._bench_feed(w, total, chunk)
    assert w.closed  # the Python writer is spent
    h = hashlib.sha256()
    got = 0
    while data := buf.read(65536):
        h.update(data)
        got += len(data)
    assert got == total
    assert h.hexdigest() == hashlib.sha256(expected(total, chunk)).hexdigest()
    assert buf.at_eof()


def test_rejects_zero_chunk_and_spent_writer():
    w, _buf = bodypipe.pipe()
    with pytest.raises(ValueError):
        bodypipe._bench_feed(w, 10, 0)
    w.close()
    with pytest.raises(ValueError):
        bodypipe._bench_feed(w, 10, 1)


def test_reader_close_stops_the_feeder():
    w, buf = bodypipe.pipe(max_buffered=4096)
    bodypipe._bench_feed(w, 1 << 40, 1024)  # would run forever without the hang-up
    assert len(buf.read(10)) == 10
    buf.close()
    # Reads never block after close(); the feeder sees Closed and closes the body, so what was
    # written stays readable, then b'' (whichever of the two happens first).
    while buf.read(4096):
        pass
    assert buf.read() == b""
