"""The examples of the reference Buffer API doc (shared/seed/buffer-api.md), on bodypipe.

Erlang-side calls map to the Writer: py_buffer:new() -> pipe(), new(N) -> pipe(N),
write -> Writer.write, close -> Writer.close.
"""

import asyncio
import json
import threading
import time

import pytest

import bodypipe
from conftest import feed


def make(data, content_length=True):
    w, b = bodypipe.pipe(len(data) if content_length else None)
    w.write(data)
    w.close()
    return b


def test_quick_start_python_side():
    # Read all data
    assert make(b"chunk1chunk2").read() == b"chunk1chunk2"
    # Or read line by line
    processed = []
    for line in make(b"a\nb\nc"):
        processed.append(line)
    assert processed == [b"a\n", b"b\n", b"c"]
    # Or read specific amount
    assert make(b"x" * 2000).read(1024) == b"x" * 1024


def test_quick_start_erlang_side_equivalent():
    w, b = bodypipe.pipe()  # py_buffer:new()
    w.write(b"chunk1")
    w.write(b"chunk2")
    w.close()
    assert b.read() == b"chunk1chunk2"
    w, b = bodypipe.pipe(4096)  # py_buffer:new(4096)
    assert b.content_length == 4096
    # Closing before the declared length is reached says so (py_buffer:close/1 returns
    # {error, incomplete}), and the reader is not told EOF.
    with pytest.raises(bodypipe.IncompleteBody):
        w.close()
    with pytest.raises(bodypipe.BodyAborted):
        b.read()
    with pytest.raises(ValueError):  # {error, closed}
        w.write(b"x")


def test_read_examples():
    b = make(b"y" * 5000)
    chunk = b.read(1024)  # Read up to 1024 bytes
    assert chunk == b"y" * 1024
    data = b.read()  # Read all (blocks until EOF)
    assert data == b"y" * 3976
    assert b.read() == b""  # Returns empty bytes at EOF


def test_read_blocks_until_data_arrives():
    w, b = bodypipe.pipe()
    t = feed(w, [b"late"], delay=0.05)
    assert b.read(4) == b"late"  # If empty, blocks until data arrives (GIL released)
    t.join()


def test_read_nonblock_examples():
    w, b = bodypipe.pipe()
    assert b.read_nonblock(1024) == b""  # Never blocks, even if no data available
    w.write(b"z" * 3000)
    assert b.read_nonblock(1024) == b"z" * 1024
    assert b.read_nonblock() == b"z" * 1976  # Read all available bytes
    w.close()


def test_readable_amount_example():
    w, b = bodypipe.pipe()
    w.write(b"abc")
    available = b.readable_amount()
    if available > 0:
        data = b.read_nonblock(available)
    assert data == b"abc"
    w.close()


def test_at_eof_polling_loop():
    w, b = bodypipe.pipe()
    t = feed(w, [b"p" * 100] * 20, delay=0.001)
    chunks = []
    while not b.at_eof():
        if b.readable_amount() > 0:
            chunks.append(b.read_nonblock(4096))
        else:
            time.sleep(0.001)
    t.join()
    assert b"".join(chunks) == b"p" * 2000


def test_readline_readlines_examples():
    b = make(b"line1\nline2\nline3")
    assert b.readline() == b"line1\n"  # Read until newline
    assert b.readlines() == [b"line2\n", b"line3"]
    assert make(b"aa\nbb\ncc\n").readlines(4) == [b"aa\n", b"bb\n"]  # hint: ~this many bytes


def test_seek_examples():
    b = make(b"0123456789abcdefghij")
    b.seek(0)  # Seek to beginning (SEEK_SET)
    assert b.tell() == 0
    b.seek(10, 1)  # Seek forward 10 bytes (SEEK_CUR)
    assert b.read(1) == b"a"
    b.seek(-5, 2)  # Seek 5 bytes before end (SEEK_END, requires EOF)
    assert b.read() == b"fghij"
    pos = b.tell()  # Current byte offset
    assert pos == 20


def test_seek_limitations():
    w, b = bodypipe.pipe()
    w.write(b"abc")
    with pytest.raises(ValueError):
        b.seek(4)  # Cannot seek past written data
    with pytest.raises(ValueError):
        b.seek(-1, 2)  # SEEK_END requires EOF
    w.close()


def test_find_examples():
    b = make(b"Content-Disposition: form-data\r\n--boundary\r\n")
    idx = b.find(b"\n")  # Find first newline
    assert idx == 31
    idx = b.find(b"boundary")  # Find multipart boundary
    assert idx == 34
    assert b.find(b"missing") == -1


def test_buffer_protocol_example():
    buf = make(bytes(range(40)))
    mv = memoryview(buf)  # Create memoryview for zero-copy access
    first_byte = mv[0]
    slice_data = bytes(mv[10:20])
    assert first_byte == 0
    assert slice_data == bytes(range(10, 20))
    assert mv.readonly is True
    assert mv.ndim == 1
    mv.release()  # Release when done


def test_iteration_example():
    buf = make(b"one\ntwo\n")
    assert [line for line in buf] == [b"one\n", b"two\n"]


def test_properties_and_methods():
    w, buf = bodypipe.pipe()
    w.write(b"12345")
    assert buf.readable() is True  # always readable
    assert buf.writable() is False  # not writable from Python
    assert buf.seekable() is True  # limited seeking supported
    assert buf.closed is False
    assert buf.readable_amount() == 5  # Available bytes (the reference: len(buf); see the README)
    buf.read(2)
    assert buf.readable_amount() == 3
    buf.close()  # Mark buffer as closed
    assert buf.closed is True
    w.close()


def test_performance_tip_memoryview_and_find():
    buf = make(b"part one data--boundary rest")
    mv = memoryview(buf)
    boundary_pos = buf.find(b"--boundary")
    part = bytes(mv[:boundary_pos])
    assert part == b"part one data"


def test_wsgi_input_simulation():
    body = json.dumps({"hello": "world"}).encode()
    w, buf = bodypipe.pipe(len(body))
    w.write(body)
    w.close()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/data",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": buf,
    }

    def handle(environ):
        return json.loads(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))

    assert handle(environ) == {"hello": "world"}


def test_chunked_transfer():
    chunks = [b"chunk%d;" % i for i in range(10)]
    w, buf = bodypipe.pipe()  # unknown size
    t = feed(w, chunks, delay=0.01)  # simulate network delay

    def stream_handler(buf):  # Python can start reading immediately
        return buf.read()  # read() blocks until data available / EOF

    assert stream_handler(buf) == b"".join(chunks)
    t.join()


def parse_multipart(buf, boundary):
    """The reference's multipart example, completed: find/readline/read on the buffer."""
    delim = b"--" + boundary.encode()
    parts = []
    # Skip the preamble and the first delimiter line.
    idx = buf.find(delim)
    assert idx >= 0
    buf.read(idx)
    line = buf.readline()
    while not line.startswith(delim + b"--"):
        headers = {}
        while True:
            line = buf.readline()
            if line == b"\r\n":
                break
            name, value = line.split(b":", 1)
            headers[name.strip()] = value.strip()
        end = buf.find(b"\r\n" + delim)
        data = buf.read(end)
        buf.read(2)  # the CRLF before the delimiter
        line = buf.readline()
        parts.append({"headers": headers, "data": data})
    return parts


def test_multipart_form_parsing_example():
    body = (
        b"preamble\r\n--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue a\r\n"
        b"--XX\r\nContent-Disposition: form-data; name=\"b\"\r\nContent-Type: text/plain\r\n\r\n"
        b"line1\r\nline2\r\n--XX--\r\n"
    )
    parts = parse_multipart(make(body), "XX")
    assert [p["data"] for p in parts] == [b"value a", b"line1\r\nline2"]
    assert parts[1]["headers"][b"Content-Type"] == b"text/plain"


async def read_buffer_async(buf):
    """Read from buffer without blocking the event loop (reference example)."""
    chunks = []
    while not buf.at_eof():
        available = buf.readable_amount()
        if available > 0:
            chunk = buf.read_nonblock(4096)
            chunks.append(chunk)
        else:
            await asyncio.sleep(0.001)
    return b"".join(chunks)


def test_async_io_integration():
    doc = {"items": list(range(3000))}
    body = json.dumps(doc).encode()
    w, buf = bodypipe.pipe()
    t = feed(w, [body[i : i + 1000] for i in range(0, len(body), 1000)], delay=0.001)

    async def process_wsgi_body_async(environ):
        body = await read_buffer_async(environ["wsgi.input"])
        return json.loads(body)

    assert asyncio.run(process_wsgi_body_async({"wsgi.input": buf})) == doc
    t.join()


def test_async_with_notification_channel():
    """The reference's notification example, with an asyncio queue standing in for the Erlang
    channel: the producer thread signals after each write."""

    async def main():
        loop = asyncio.get_running_loop()
        q = asyncio.Queue()

        class Channel:
            async def async_receive(self):
                return await q.get()

        w, buf = bodypipe.pipe()

        def producer():
            for i in range(20):
                w.write(b"%02d" % i)
                loop.call_soon_threadsafe(q.put_nowait, "data")
                time.sleep(0.001)
            w.close()
            loop.call_soon_threadsafe(q.put_nowait, "eof")

        t = threading.Thread(target=producer)
        t.start()

        async def read_with_notification(buf, notify_channel):
            chunks = []
            while not buf.at_eof():
                available = buf.readable_amount()
                if available > 0:
                    chunks.append(buf.read_nonblock(available))
                else:
                    await notify_channel.async_receive()
            return b"".join(chunks)

        out = await read_with_notification(buf, Channel())
        t.join()
        return out

    assert asyncio.run(main()) == b"".join(b"%02d" % i for i in range(20))
