"""Async reads (issue 7): aread, areadline, areadexactly, async for, on asyncio and uvloop.

Plain `asyncio.Runner` (no pytest-asyncio): every test runs its coroutine on a fresh loop of
each kind.
"""

import asyncio
import gc
import hashlib
import importlib.util
import os
import pathlib
import random
import threading
import time

import pytest

import bodypipe

from conftest import feed

# A test dependency (requirements-test.txt): its absence is a set-up failure, not a skip.
import uvloop

LOOPS = ["asyncio", "uvloop"]


@pytest.fixture(params=LOOPS)
def run(request):
    """run(coro_fn, *args): runs coro_fn(*args) to completion on a new loop of the given kind."""
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def runner(fn, *args, timeout=30):
        async def guarded():
            async with asyncio.timeout(timeout):
                return await fn(*args)

        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(guarded())

    runner.kind = request.param
    return runner


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def later(delay, fn, *args):
    """Calls fn(*args) from a new thread after `delay` seconds."""

    def go():
        time.sleep(delay)
        fn(*args)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


# --- aread -------------------------------------------------------------------------------------


def test_aread_returns_at_once_when_data_is_there(run):
    async def main():
        w, b = bodypipe.pipe()
        w.write(b"hello world")
        assert await b.aread(5) == b"hello"
        assert await b.aread(100) == b" world"  # up to n: what is there
        w.close()
        assert await b.aread(10) == b""
        assert await b.aread() == b""

    run(main)


def test_aread_waits_for_a_write_from_a_thread(run):
    async def main():
        w, b = bodypipe.pipe()
        t = later(0.05, w.write, b"abc")
        # The read parks until the thread writes (no timing assertion: the bytes it returns can
        # only exist after that write, which is what "waits" means).
        assert await b.aread(10) == b"abc"
        t.join()
        later(0.02, w.close)
        assert await b.aread(10) == b""

    run(main)


def test_aread_does_not_block_the_loop(run):
    async def main():
        w, b = bodypipe.pipe()
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        tick = asyncio.create_task(ticker())
        later(0.1, w.write, b"x")
        assert await b.aread(1) == b"x"
        tick.cancel()
        assert ticks >= 5

    run(main)


def test_aread_all(run):
    async def main():
        w, b = bodypipe.pipe()
        chunks = [bytes([i]) * 1000 for i in range(50)]
        feed(w, chunks, delay=0.001)
        assert await b.aread() == b"".join(chunks)
        assert await b.aread(-1) == b""
        # Known length.
        w, b = bodypipe.pipe(content_length=5000)
        feed(w, [b"z" * 1000] * 5, delay=0.002, close=False)
        assert await b.aread(None) == b"z" * 5000

    run(main)


def test_aread_all_ring_mode(run):
    async def main():
        w, b = bodypipe.pipe(max_buffered=4096)
        data = random.Random(1).randbytes(200_000)
        feed(w, [data[i : i + 3000] for i in range(0, len(data), 3000)])
        assert await b.aread() == data

    run(main)


def test_aread_zero_and_bad_sizes(run):
    async def main():
        w, b = bodypipe.pipe()
        assert await b.aread(0) == b""  # never waits
        w.write(b"ab")
        later(0.02, w.close)
        assert await b.aread(-5) == b"ab"  # negative: everything up to EOF

    run(main)
    _, b = bodypipe.pipe()
    for bad in ("3", 1.5):
        with pytest.raises(TypeError):
            b.aread(bad)
        with pytest.raises(TypeError):
            b.areadline(bad)


def test_aread_in_a_writer_coroutine_on_the_same_loop(run):
    async def main():
        w, b = bodypipe.pipe()

        async def produce():
            for i in range(100):
                await asyncio.sleep(0)
                w.write(b"%d\n" % i)
            w.close()

        task = asyncio.create_task(produce())
        got = b""
        while chunk := await b.aread(7):
            got += chunk
        await task
        assert got == b"".join(b"%d\n" % i for i in range(100))

    run(main)


def test_many_small_writes_lose_nothing(run):
    async def main():
        w, b = bodypipe.pipe()
        data = random.Random(2).randbytes(300_000)
        rng = random.Random(3)
        cuts = sorted(rng.sample(range(1, len(data)), 2000))
        chunks = [data[i:j] for i, j in zip([0] + cuts, cuts + [len(data)])]
        t = feed(w, chunks)
        got = bytearray()
        while chunk := await b.aread(rng.choice([1, 10, 1000, 65536])):
            got += chunk
        t.join()
        assert bytes(got) == data

    run(main)


def test_large_writes_wake_from_a_thread_without_the_gil(run):
    # Writes above 256 KiB are copied with the GIL released, so the readiness callback runs on a
    # thread that does not hold the GIL: it must not need it.
    async def main():
        w, b = bodypipe.pipe()
        block = random.Random(8).randbytes(1 << 20)
        t = feed(w, [block] * 8, delay=0.01)
        h = hashlib.sha256()
        while chunk := await b.aread(300_000):
            h.update(chunk)
        t.join()
        assert h.hexdigest() == hashlib.sha256(block * 8).hexdigest()

    run(main)


# --- areadline / async for ---------------------------------------------------------------------


def test_areadline(run):
    async def main():
        w, b = bodypipe.pipe()
        feed(w, [b"fir", b"st\nsec", b"ond\n", b"\n", b"no newline"], delay=0.01)
        assert await b.areadline() == b"first\n"
        assert await b.areadline() == b"second\n"
        assert await b.areadline() == b"\n"
        assert await b.areadline() == b"no newline"
        assert await b.areadline() == b""

    run(main)


def test_areadline_size_limit(run):
    async def main():
        w, b = bodypipe.pipe()
        feed(w, [b"abcdefgh", b"ij\nkl\n"], delay=0.01)
        assert await b.areadline(4) == b"abcd"
        assert await b.areadline(0) == b""
        assert await b.areadline(100) == b"efghij\n"
        assert await b.areadline(-1) == b"kl\n"
        assert await b.areadline(None) == b""

    run(main)


def test_areadline_wakes_for_the_byte_that_completes_the_line(run):
    # The newline arrives while the reader is parked on an incomplete line: the threshold is
    # "one more byte than was scanned", so the wake-up must come from that one write.
    async def main():
        w, b = bodypipe.pipe()
        w.write(b"x" * 1000)
        later(0.05, w.write, b"\n")
        assert await b.areadline() == b"x" * 1000 + b"\n"

    run(main)


def test_areadline_long_line_in_ring_mode(run):
    async def main():
        w, b = bodypipe.pipe(max_buffered=1024)
        line = b"y" * 10_000 + b"\n"
        feed(w, [line[i : i + 700] for i in range(0, len(line), 700)] + [b"tail\n"])
        assert await b.areadline() == line
        assert await b.areadline() == b"tail\n"
        assert await b.areadline() == b""

    run(main)


def test_async_for(run):
    async def main():
        w, b = bodypipe.pipe()
        lines = [b"line %d\n" % i for i in range(500)] + [b"last"]
        data = b"".join(lines)
        feed(w, [data[i : i + 97] for i in range(0, len(data), 97)])
        got = [line async for line in b]
        assert got == lines

    run(main)


def test_async_for_matches_sync_iteration(run):
    data = b"".join(random.Random(4).choice([b"a", b"bb\n", b"\n", b"ccc"]) for _ in range(5000))

    async def main():
        w, b = bodypipe.pipe(segment_size=64)
        feed(w, [data[i : i + 33] for i in range(0, len(data), 33)])
        return [line async for line in b]

    assert run(main) == list(bodypipe.PyBuffer.from_bytes(data))


# --- areadexactly ------------------------------------------------------------------------------


def test_areadexactly(run):
    async def main():
        w, b = bodypipe.pipe()
        data = bytes(range(256)) * 40
        feed(w, [data[i : i + 100] for i in range(0, len(data), 100)], delay=0.0005)
        assert await b.areadexactly(0) == b""
        assert await b.areadexactly(5000) == data[:5000]
        assert await b.areadexactly(5000) == data[5000:10000]
        with pytest.raises(asyncio.IncompleteReadError) as ei:
            await b.areadexactly(1000)
        assert ei.value.partial == data[10000:]
        assert ei.value.expected == 1000
        with pytest.raises(asyncio.IncompleteReadError) as ei:
            await b.areadexactly(1)
        assert ei.value.partial == b""

    run(main)


def test_areadexactly_bad_sizes(run):
    async def main():
        _, b = bodypipe.pipe()
        with pytest.raises(ValueError):
            b.areadexactly(-1)
        with pytest.raises(TypeError):
            b.areadexactly(None)
        # Too large for a size: OverflowError, as read(2**70) (not TypeError: it is an integer).
        with pytest.raises(OverflowError):
            b.areadexactly(2**70)
        with pytest.raises(OverflowError):
            b.areadexactly(-(2**70))
        with pytest.raises(OverflowError):
            b.read(2**70)

    run(main)


def test_areadexactly_ring_mode_beyond_max_buffered(run):
    async def main():
        w, b = bodypipe.pipe(max_buffered=1000)
        data = random.Random(5).randbytes(50_000)
        feed(w, [data[i : i + 300] for i in range(0, len(data), 300)])
        assert await b.areadexactly(20_000) == data[:20_000]
        assert await b.areadexactly(30_000) == data[20_000:]

    run(main)


def test_areadexactly_waits_for_all_bytes_without_consuming(run):
    async def main():
        w, b = bodypipe.pipe()
        w.write(b"abc")
        task = asyncio.create_task(b.areadexactly(6))
        await asyncio.sleep(0.02)
        assert not task.done()
        assert b.readable_amount() == 3 and b.tell() == 0  # nothing consumed while waiting
        w.write(b"def")
        assert await task == b"abcdef"

    run(main)


# --- EOF, abort, close ---------------------------------------------------------------------------


def test_eof(run):
    async def main():
        w, b = bodypipe.pipe()
        later(0.02, w.close)
        assert await b.aread(5) == b""
        assert await b.areadline() == b""
        assert [x async for x in b] == []
        # Empty body with a declared length 0 is at EOF at once.
        _, b = bodypipe.pipe(content_length=0)
        assert await b.aread() == b""

    run(main)


def test_body_aborted(run):
    async def main():
        w, b = bodypipe.pipe()
        feed(w, [b"partial"], delay=0.01, abort="client went away")
        assert await b.aread(100) == b"partial"  # the data first, as read1
        with pytest.raises(bodypipe.BodyAborted) as ei:
            await b.aread(100)
        assert ei.value.reason == "client went away"
        assert ei.value.partial == b""  # consumed nothing, and says so
        with pytest.raises(bodypipe.BodyAborted) as ei:
            await b.areadline()
        assert ei.value.partial == b""

        w, b = bodypipe.pipe()
        feed(w, [b"abc"], delay=0.01, abort="gone")
        with pytest.raises(bodypipe.BodyAborted) as ei:
            await b.aread()  # asked for everything: raises, with what it consumed
        assert ei.value.partial == b"abc"

        w, b = bodypipe.pipe()
        feed(w, [b"abc"], delay=0.01, abort="gone")
        with pytest.raises(bodypipe.BodyAborted) as ei:
            await b.areadexactly(10)
        assert ei.value.partial == b"abc"

        w, b = bodypipe.pipe()
        feed(w, [b"line\nrest"], delay=0.01, abort="gone")
        assert await b.areadline() == b"line\n"
        # A last line that can never complete is no line: the abort, with its bytes.
        with pytest.raises(bodypipe.BodyAborted) as ei:
            await b.areadline()
        assert ei.value.partial == b"rest"
        with pytest.raises(bodypipe.BodyAborted) as ei:
            await b.areadline()
        assert ei.value.partial == b""

    run(main)


def test_body_aborted_ring_mode_all(run):
    async def main():
        w, b = bodypipe.pipe(max_buffered=100)
        feed(w, [b"q" * 50] * 10, abort="upstream error")
        with pytest.raises(bodypipe.BodyAborted) as ei:
            await b.aread()
        assert ei.value.partial == b"q" * 500

    run(main)


def test_abort_wakes_all_waiters(run):
    async def main():
        bufs = [bodypipe.pipe() for _ in range(20)]
        tasks = [asyncio.create_task(b.aread(10)) for _, b in bufs]
        await asyncio.sleep(0.01)
        for w, _ in bufs:
            later(0.0, w.abort, "bye")
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, bodypipe.BodyAborted) for r in results)

    run(main)


def test_reader_close_wakes_a_waiting_read(run):
    async def main():
        w, b = bodypipe.pipe()
        task = asyncio.create_task(b.aread(10))
        await asyncio.sleep(0.01)
        b.close()  # on the loop's own thread
        assert await task == b""
        with pytest.raises(BrokenPipeError):
            w.write(b"x")

    run(main)


# --- timeouts and cancellation -----------------------------------------------------------------


def test_timeout(run):
    async def main():
        w, b = bodypipe.pipe()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await b.aread(10)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(b.areadline(), 0.02)
        w.write(b"late\n")  # nothing was lost: the next read gets it
        assert await b.areadline() == b"late\n"

    run(main)


def test_cancelled_aread_loses_nothing(run):
    async def main():
        w, b = bodypipe.pipe()
        task = asyncio.create_task(b.aread(10))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        w.write(b"payload")  # the stale callback may still fire: harmless
        await asyncio.sleep(0.01)
        assert await b.aread(10) == b"payload"

    run(main)


def test_cancelled_areadline_and_areadexactly_lose_nothing(run):
    async def main():
        w, b = bodypipe.pipe()
        w.write(b"incomplete ")
        t = asyncio.create_task(b.areadline())
        await asyncio.sleep(0.01)
        t.cancel()
        await asyncio.gather(t, return_exceptions=True)
        assert b.tell() == 0
        w.write(b"line\n")
        assert await b.areadline() == b"incomplete line\n"

        w.write(b"1234")
        t = asyncio.create_task(b.areadexactly(8))
        await asyncio.sleep(0.01)
        t.cancel()
        await asyncio.gather(t, return_exceptions=True)
        w.write(b"5678")
        assert await b.areadexactly(8) == b"12345678"

    run(main)


def test_cancel_storm_then_data(run):
    # Many cancelled waits (e.g. a polling client with a short timeout) must not pile up.
    async def main():
        w, b = bodypipe.pipe()
        for _ in range(300):
            try:
                async with asyncio.timeout(0):
                    await b.aread(1)
            except TimeoutError:
                pass
        assert b._parked() == 0
        later(0.01, w.write, b"ok")
        assert await b.aread(5) == b"ok"

    run(main)


def test_concurrent_tasks_on_one_buffer_share_the_stream(run):
    async def main():
        w, b = bodypipe.pipe()
        n = 2000
        feed(w, [b"%05d\n" % i for i in range(n)], delay=0)

        async def reader():
            got = []
            while line := await b.areadline():
                got.append(line)
            return got

        results = await asyncio.gather(*(reader() for _ in range(8)))
        lines = sorted(line for r in results for line in r)
        assert lines == [b"%05d\n" % i for i in range(n)]

    run(main)


def test_two_waiters_with_different_thresholds(run):
    async def main():
        w, b = bodypipe.pipe()
        first = asyncio.create_task(b.areadexactly(4))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(b.aread(100))  # a second subscription, lower threshold
        await asyncio.sleep(0.01)
        assert b._parked() == 2
        later(0.0, w.write, b"1")
        # aread wakes on the first byte; areadexactly keeps waiting, parked again.
        assert await second == b"1"
        await asyncio.sleep(0.01)
        assert not first.done()
        later(0.0, w.write, b"2345")
        assert await first == b"2345"
        assert b._parked() == 0

    run(main)


def test_seek_back_wakes_a_waiter(run):
    async def main():
        w, b = bodypipe.pipe()
        w.write(b"abc")
        assert await b.aread(3) == b"abc"
        task = asyncio.create_task(b.aread(3))
        await asyncio.sleep(0.01)
        b.seek(0)
        assert await task == b"abc"

    run(main)


# --- scale, descriptors, loops -----------------------------------------------------------------


def test_thousand_readers_one_writer_thread(run):
    n = 1000
    rounds = 5

    async def main():
        pipes = [bodypipe.pipe() for _ in range(n)]
        expected = [hashlib.sha256() for _ in range(n)]
        before = open_fds()
        peak = before

        def writer():
            rng = random.Random(6)
            for r in range(rounds):
                for i, (w, _) in enumerate(pipes):
                    chunk = b"%d:%d;" % (i, r) * rng.randint(1, 20)
                    expected[i].update(chunk)
                    w.write(chunk)
                time.sleep(0.005)
            for w, _ in pipes:
                w.close()

        async def reader(b):
            h = hashlib.sha256()
            while chunk := await b.aread(65536):
                h.update(chunk)
            return h.hexdigest()

        tasks = [asyncio.create_task(reader(b)) for _, b in pipes]
        await asyncio.sleep(0.05)  # every reader is parked now
        peak = max(peak, open_fds())
        t = threading.Thread(target=writer)
        t.start()
        while not all(task.done() for task in tasks):
            peak = max(peak, open_fds())
            await asyncio.sleep(0.005)
        t.join()
        results = await asyncio.gather(*tasks)
        assert results == [h.hexdigest() for h in expected]
        # One wake-up fd for the loop, however many readers wait.
        assert peak - before <= 2, (before, peak)

    run(main, timeout=120)


def test_one_fd_per_loop_and_it_is_released(run):
    def one_loop():
        async def main():
            w, b = bodypipe.pipe()
            later(0.005, w.write, b"x")
            assert await b.aread(1) == b"x"

        run(main)

    one_loop()  # warm up: anything the loop kind allocates once
    gc.collect()
    before = open_fds()
    for _ in range(20):
        one_loop()
    gc.collect()
    assert open_fds() - before <= 2


def test_readers_on_two_loops_in_two_threads():
    results = {}

    def loop_thread(name, b):
        async def main():
            got = b""
            while chunk := await b.aread(100):
                got += chunk
            return got

        results[name] = asyncio.run(main())

    w1, b1 = bodypipe.pipe()
    w2, b2 = bodypipe.pipe()
    threads = [threading.Thread(target=loop_thread, args=(n, b)) for n, b in (("a", b1), ("b", b2))]
    for t in threads:
        t.start()
    for i in range(100):
        w1.write(b"a%d" % i)
        w2.write(b"b%d" % i)
        if i % 10 == 0:
            time.sleep(0.001)
    w1.close()
    w2.close()
    for t in threads:
        t.join(30)
    assert results["a"] == b"".join(b"a%d" % i for i in range(100))
    assert results["b"] == b"".join(b"b%d" % i for i in range(100))


def test_sync_and_async_readers_mix(run):
    async def main():
        w, b = bodypipe.pipe()
        w.write(b"sync\n")
        assert b.readline() == b"sync\n"
        later(0.01, w.write, b"async\n")
        assert await b.areadline() == b"async\n"
        w.write(b"tail")
        w.close()
        assert b.read() == b"tail"
        assert await b.aread() == b""

    run(main)


def test_wrapped_reader_from_rust_side_is_awaitable(run):
    # The _test_create helper keeps its writer inside: data present, never EOF until close().
    async def main():
        b = bodypipe.PyBuffer._test_create(b"one\ntwo")
        assert await b.areadline() == b"one\n"
        later(0.02, b.close)
        assert await b.areadline() == b"two"
        assert await b.areadline() == b""
        b = bodypipe.PyBuffer.from_bytes(b"complete")
        assert await b.aread() == b"complete"

    run(main)


# --- the example server ------------------------------------------------------------------------


def load_example():
    path = pathlib.Path(__file__).resolve().parent.parent / "examples" / "async_server.py"
    spec = importlib.util.spec_from_file_location("async_server_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


async def post(port, path, chunks, delay=0.0, length=None, close_early=False):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    total = sum(len(c) for c in chunks) if length is None else length
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n".encode())
    for c in chunks:
        writer.write(c)
        await writer.drain()
        if delay:
            await asyncio.sleep(delay)
    if close_early:
        writer.close()
        return None
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body


def test_example_async_server(run):
    example = load_example()

    async def main():
        server = await example.serve()
        port = server.sockets[0].getsockname()[1]
        data = random.Random(7).randbytes(3 * 1024 * 1024 + 17)
        chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
        status, body = await post(port, "/", chunks, delay=0.001)
        assert status == b"HTTP/1.1 200 OK"
        import json

        assert json.loads(body) == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        text = b"".join(b"row %d\n" % i for i in range(1000))
        status, body = await post(port, "/lines", [text[:5000], text[5000:]], delay=0.01)
        assert json.loads(body) == {"lines": 1000}
        # Several clients at once, and one that hangs up mid-body.
        results = await asyncio.gather(
            *(post(port, "/", [b"%d" % i * 1000] * 5, delay=0.002) for i in range(10)),
            post(port, "/", [b"x" * 100], length=1000, close_early=True),
        )
        for i, r in enumerate(results[:10]):
            assert json.loads(r[1])["size"] == 5 * len(b"%d" % i * 1000)
        status, body = await post(port, "/", [])
        assert json.loads(body) == {"size": 0, "sha256": hashlib.sha256(b"").hexdigest()}
        # A Content-Length above the limit is answered 413 at once, without reading the body.
        status, body = await post(port, "/", [], length=example.MAX_BODY + 1)
        assert status == b"HTTP/1.1 413 Content Too Large"
        server.close()
        await server.wait_closed()
        small = await example.serve(max_body=10)
        port = small.sockets[0].getsockname()[1]
        assert (await post(port, "/", [b"x" * 10]))[0] == b"HTTP/1.1 200 OK"
        assert (await post(port, "/", [b"x" * 11]))[0] == b"HTTP/1.1 413 Content Too Large"
        small.close()
        await small.wait_closed()

    run(main)


# --- the async producer: Writer.awrite / Writer.wait_writable (issue 12) ------------------------


def test_awrite_feeds_ring_mode_with_backpressure_from_the_same_loop(run):
    # Producer and consumer are tasks of one loop: awrite must park the producer task (not the
    # loop), or the consumer could never run and make room.
    async def main():
        data = random.Random(12).randbytes(4 * 1024 * 1024 + 5)
        w, b = bodypipe.pipe(content_length=len(data), max_buffered=64 * 1024)
        full = 0

        async def produce():
            nonlocal full
            for i in range(0, len(data), 10_000):
                chunk = data[i : i + 10_000]
                if not w._has_room():
                    full += 1
                assert await w.awrite(chunk) == len(chunk)

        async def consume():
            parts = []
            while part := await b.aread(32 * 1024):
                parts.append(part)
            return b"".join(parts)

        got, _ = await asyncio.gather(consume(), produce())
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        assert full > 0, "the ring never filled: backpressure untested"
        assert b.at_eof()

    run(main)


def test_awrite_parks_until_a_reader_thread_makes_room(run):
    async def main():
        w, b = bodypipe.pipe(max_buffered=8)
        assert await w.awrite(b"12345678") == 8
        assert not w._has_room()
        pending = asyncio.create_task(w.awrite(bytearray(b"9abc")))
        for _ in range(3):
            await asyncio.sleep(0)
        assert not pending.done()
        assert w.buffered == 8, "a parked awrite stores nothing"
        later(0.0, b.read, 5)  # below half of 8 unread: the reader's thread wakes the task
        assert await pending == 4
        assert b.read(7) == b"6789abc"
        await w.wait_writable()  # room: at once
        w.close()

    run(main)


def test_wait_writable_reader_close_closed_writer_and_cancel(run):
    async def main():
        # Outside ring mode: always writable.
        w, b = bodypipe.pipe()
        await w.wait_writable()
        # The reader hanging up while the producer waits is a BrokenPipeError, as for write().
        w, b = bodypipe.pipe(max_buffered=4)
        await w.awrite(b"full")
        waiting = asyncio.create_task(w.wait_writable())
        for _ in range(3):
            await asyncio.sleep(0)
        later(0.0, b.close)
        with pytest.raises(BrokenPipeError):
            await waiting
        with pytest.raises(BrokenPipeError):
            await w.awrite(b"x")
        # A closed Writer: ValueError, as for write().
        w, b = bodypipe.pipe(max_buffered=4)
        w.close()
        with pytest.raises(ValueError):
            await w.wait_writable()
        with pytest.raises(ValueError):
            await w.awrite(b"x")
        # A cancelled awrite stores nothing; the next one goes through once there is room.
        w, b = bodypipe.pipe(max_buffered=4)
        await w.awrite(b"abcd")
        for _ in range(50):
            try:
                async with asyncio.timeout(0):
                    await w.awrite(b"never")
            except TimeoutError:
                pass
        assert w.written == 4
        later(0.0, b.read, 4)
        assert await w.awrite(b"efgh") == 4
        assert b.read(4) == b"efgh"

    run(main)


def test_awrite_with_many_writers_on_one_loop(run):
    # Sixteen bodies fed by sixteen producer tasks and drained by sixteen consumer tasks, all on
    # one loop, each ring far smaller than its body: every task parks many times, none is lost.
    async def main():
        async def one(i):
            data = bytes([i]) * (256 * 1024 + i)
            w, b = bodypipe.pipe(content_length=len(data), max_buffered=4096)

            async def produce():
                for j in range(0, len(data), 1000):
                    await w.awrite(data[j : j + 1000])

            async def consume():
                return await b.aread()

            got, _ = await asyncio.gather(consume(), produce())
            assert got == data

        await asyncio.gather(*(one(i) for i in range(16)))

    run(main)
