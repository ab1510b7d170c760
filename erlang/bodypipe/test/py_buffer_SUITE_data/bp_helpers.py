"""Python side of py_buffer_SUITE: readers that run inside the VM's embedded interpreter."""
import asyncio
import gc

from erlang import PyBuffer, BodyAborted

_kept = {}


def read_all(buf):
    return buf.read()


def read_chunks(buf, n):
    """Blocking read(n) until EOF; returns (data, number of reads)."""
    parts = []
    while True:
        chunk = buf.read(n)
        if not chunk:
            break
        parts.append(chunk)
    return b"".join(parts), len(parts)


def read_lines(buf):
    lines = []
    while True:
        line = buf.readline()
        if not line:
            break
        lines.append(line)
    return lines


def iterate(buf):
    return [line for line in buf]


def read_async(buf):
    """Polls read_nonblock/readable_amount/at_eof inside an asyncio loop; returns (data, sleeps)."""

    async def main():
        chunks, sleeps = [], 0
        while not buf.at_eof():
            if buf.readable_amount() > 0:
                chunks.append(buf.read_nonblock(4096))
            else:
                sleeps += 1
                await asyncio.sleep(0.001)
        return b"".join(chunks), sleeps

    return asyncio.run(main())


def read_expect_abort(buf):
    """Reads until BodyAborted; returns (bytes read before it, the exception's str)."""
    got = []
    try:
        while True:
            chunk = buf.read1(65536)
            if not chunk:
                return (b"".join(got), None)
            got.append(chunk)
    except BodyAborted as e:
        got.append(getattr(e, "partial", b""))
        return (b"".join(got), str(e))


def read_n(buf, n):
    return buf.read(n)


def close_reader(buf):
    buf.close()


def keep(name, buf):
    _kept[name] = buf
    return isinstance(buf, PyBuffer)


def keep_view(name, buf):
    """Keeps only a memoryview of the unread bytes; the PyBuffer itself is dropped."""
    _kept[name] = memoryview(buf)
    return len(_kept[name])


def view_bytes(name):
    mv = _kept.pop(name)
    gc.collect()
    data = bytes(mv)
    mv.release()
    return data


def kept_read_expect_abort(name):
    return read_expect_abort(_kept.pop(name))


def kept_read(name):
    return _kept.pop(name).read()


def drop(name):
    _kept.pop(name, None)
    gc.collect()
    return len(_kept)


def churn(bufs):
    """Reads every buffer fully and drops them; returns total bytes."""
    total = 0
    for b in bufs:
        total += len(b.read())
    del bufs
    gc.collect()
    return total
