"""Line iteration takes runs of lines ahead (python/src/readahead.rs): every other call must
still see the body exactly as if the lines had been read one by one.

Random interleavings of iteration, readline(limit) (alone, and several in a row, after which it
takes runs too), readlines(hint), read(n), readinto, tell, seek, peek, find and readable_amount
run against an `io.BytesIO` holding the same bytes, and
every result must be equal: on a finished body (in one segment, and in many small ones so runs
meet segment ends), and with a writer thread feeding the body in chunks while the reader reads
(blocking calls then return what BytesIO returns once the data is there; calls answering about
what is there now are checked for what they can promise).
"""

import io
import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bodypipe

# Lines of 0-40 bytes (some empty, some long), joined, with or without a last newline.
lines = st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"x")), max_size=60)
bodies = st.tuples(lines, st.booleans()).map(lambda t: b"\n".join(t[0]) + (b"\n" if t[1] else b""))

ops = st.lists(
    st.one_of(
        st.tuples(st.just("next"), st.integers(1, 8)),
        st.tuples(st.just("readline"), st.none() | st.integers(0, 50)),
        # Enough in a row that readline takes runs too.
        st.tuples(st.just("readlines in a row"), st.lists(st.none() | st.integers(0, 50), min_size=8, max_size=12)),
        st.tuples(st.just("readlines"), st.integers(0, 120)),
        st.tuples(st.just("read"), st.integers(0, 90)),
        st.tuples(st.just("readinto"), st.integers(1, 90)),
        st.tuples(st.just("tell"), st.none()),
        st.tuples(st.just("seek"), st.integers(0, 2000)),
        st.tuples(st.just("peek"), st.integers(1, 50)),
        st.tuples(st.just("find"), st.binary(min_size=1, max_size=3)),
        st.tuples(st.just("readable_amount"), st.none()),
    ),
    max_size=40,
)


def step(buf, bio, data, op, arg, live):
    """Applies one operation to both; `live`: a writer may still be adding bytes."""
    if op == "next":
        # Several in a row, so runs are taken and then partly served.
        for _ in range(arg):
            assert next(buf, None) == next(bio, None)
    elif op == "readline":
        assert buf.readline(arg) == bio.readline(arg)
    elif op == "readlines in a row":
        for limit in arg:
            assert buf.readline(limit) == bio.readline(limit)
    elif op == "readlines":
        assert buf.readlines(arg) == bio.readlines(arg)
    elif op == "read":
        assert buf.read(arg) == bio.read(arg)
    elif op == "readinto":
        mine, theirs = bytearray(arg), bytearray(arg)
        n = buf.readinto(mine)
        if live:
            # At least one byte unless at the end, and the bytes that come next.
            assert bio.readinto(memoryview(theirs)[:n]) == n
            assert n > 0 or bio.tell() == len(data)
        else:
            assert n == bio.readinto(theirs)
        assert mine[:n] == theirs[:n]
    elif op == "tell":
        assert buf.tell() == bio.tell()
    elif op == "seek":
        # Backwards or to where we are (the bytes there are written, whatever the writer does).
        to = arg % (bio.tell() + 1)
        assert buf.seek(to) == bio.seek(to)
    elif op == "peek":
        got = buf.peek(arg)
        want = data[bio.tell() : bio.tell() + arg]
        if live:
            assert want.startswith(got) and (got or not want)
        else:
            assert got == want
    elif op == "find":
        if not live:
            unread = data[bio.tell() :]
            assert buf.find(arg) == unread.find(arg)
    elif op == "readable_amount":
        n = buf.readable_amount()
        if live:
            assert n <= len(data) - bio.tell()
        else:
            assert n == len(data) - bio.tell()
    assert buf.tell() == bio.tell()


def finish(buf, bio):
    """The rest, by iteration: the same lines, then the end."""
    assert list(buf) == list(bio)
    assert buf.read() == b""


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=bodies, ops=ops, segment=st.sampled_from([None, 16, 64]))
def test_finished_body_against_bytesio(data, ops, segment):
    w, buf = bodypipe.pipe(segment_size=segment)
    w.write(data)
    w.close()
    bio = io.BytesIO(data)
    for op, arg in ops:
        step(buf, bio, data, op, arg, live=False)
    finish(buf, bio)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=bodies,
    ops=ops,
    cuts=st.lists(st.integers(1, 50), min_size=1, max_size=20),
    ring=st.booleans(),
)
def test_fed_by_a_writer_thread_against_bytesio(data, ops, cuts, ring):
    if ring:
        # Ring mode: the writer waits for room; backward seeks may leave the retained window.
        ops = [(op, arg) for op, arg in ops if op != "seek"]
        w, buf = bodypipe.pipe(max_buffered=64, segment_size=16)
    else:
        w, buf = bodypipe.pipe()

    def writer():
        off, i = 0, 0
        while off < len(data):
            n = cuts[i % len(cuts)]
            w.write(data[off : off + n])
            off, i = off + n, i + 1
        w.close()

    t = threading.Thread(target=writer)
    t.start()
    try:
        bio = io.BytesIO(data)
        for op, arg in ops:
            step(buf, bio, data, op, arg, live=True)
        finish(buf, bio)
    finally:
        buf.close()  # a failed check must not leave the writer waiting for room
        t.join()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    datas=st.lists(bodies, min_size=2, max_size=5),
    ops=st.lists(st.tuples(st.integers(0, 4), ops.map(lambda o: o[:3])), max_size=40),
)
def test_bodies_iterated_in_turn_against_bytesio(datas, ops):
    # Several bodies with runs out at once: each buffer finds its own run in the table (by its
    # remembered place, which other runs ending moves), never another body's.
    pairs = []
    for data in datas:
        w, buf = bodypipe.pipe()
        w.write(data)
        w.close()
        pairs.append((buf, io.BytesIO(data), data))
    for which, some in ops:
        buf, bio, data = pairs[which % len(pairs)]
        for op, arg in some:
            step(buf, bio, data, op, arg, live=False)
    for buf, bio, _ in pairs:
        finish(buf, bio)


def test_the_writer_counts_lines_taken_ahead_as_unread():
    data = b"".join(b"%d\n" % i for i in range(200))
    w, buf = bodypipe.pipe()
    w.write(data)
    for i in range(3):
        assert next(buf) == b"%d\n" % i
        assert w.buffered == buf.readable_amount() == len(data) - buf.tell()
    assert repr(buf).startswith(f"<bodypipe.PyBuffer pos={buf.tell()} available={len(data) - buf.tell()} ")


def test_a_buffer_dropped_mid_iteration_lets_its_reader_go():
    # The run taken ahead holds the core reader; dropping the buffer must still drop the reader,
    # which tells the writer nobody reads any more.
    w, buf = bodypipe.pipe()
    w.write(b"".join(b"%d\n" % i for i in range(200)))
    assert next(buf) == b"0\n"
    del buf
    assert w.reader_closed
