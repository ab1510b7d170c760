"""Property test: random interleavings of writes, aborts, closes (short of a declared length and
complete) and the read calls, against a plain model of the body that raises on abort.

The model is a bytes buffer, a position and an end state (open, EOF, aborted with a reason); a
short close is an abort with the reason "incomplete body". Blocking reads run with a zero
timeout, so each call's outcome is decided by what is there: data, EOF, the abort, or a
`TimeoutError` that consumed nothing. Every call's result (or exception, with its `partial`)
must match the model's, and after every step so must `tell()`, `readable_amount()` and
`at_eof()`. Segment sizes 1, 3 and 7 put segment boundaries everywhere; the default sizing too.
"""

import asyncio

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import bodypipe

OPEN, EOF, ABORTED = "open", "eof", "aborted"
INCOMPLETE = "incomplete body"

chunks = st.binary(max_size=12).map(lambda b: b.replace(b"\x00", b"\n"))
sizes = st.integers(min_value=1, max_value=20)


class Outcome:
    """What a call did: a value, or an exception type with its `partial`."""

    def __init__(self, value=None, exc=None, partial=None):
        self.value, self.exc, self.partial = value, exc, partial

    def __eq__(self, other):
        return (self.value, self.exc, self.partial) == (other.value, other.exc, other.partial)

    def __repr__(self):
        return f"raise {self.exc.__name__}(partial={self.partial!r})" if self.exc else repr(self.value)


def run(call):
    try:
        return Outcome(value=call())
    except (bodypipe.BodyAborted, TimeoutError) as e:
        kind = bodypipe.BodyAborted if isinstance(e, bodypipe.BodyAborted) else TimeoutError
        return Outcome(exc=kind, partial=e.partial)


class Body(RuleBasedStateMachine):
    @initialize(
        content_length=st.none() | st.integers(min_value=0, max_value=60),
        segment=st.sampled_from([None, 1, 3, 7]),
    )
    def build(self, content_length, segment):
        self.w, self.b = bodypipe.pipe(content_length, segment_size=segment)
        self.b.settimeout(0)
        self.cl = content_length
        self.data = bytearray()
        self.pos = 0
        self.end = EOF if content_length == 0 else OPEN
        self.reason = None
        self.writer_open = True

    # --- the model ------------------------------------------------------------------------

    def unread(self):
        return bytes(self.data[self.pos :])

    def take(self, n):
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += len(out)
        return out

    def nothing_left(self, open_outcome):
        """The outcome of a read finding no byte: the open stream's, b'' at EOF, the abort."""
        if self.end == ABORTED:
            return Outcome(exc=bodypipe.BodyAborted, partial=b"")
        if self.end == EOF:
            return Outcome(value=b"")
        return open_outcome

    def timeout(self):
        return Outcome(exc=TimeoutError, partial=b"")

    def check(self, got, expect):
        assert got == expect, f"got {got!r}, model {expect!r}"

    # --- the writer -----------------------------------------------------------------------

    @precondition(lambda self: self.writer_open)
    @rule(data=chunks)
    def write(self, data):
        if self.cl is not None and len(self.data) + len(data) > self.cl:
            with pytest.raises(ValueError):
                self.w.write(data)
            return
        self.w.write(data)
        self.data += data
        if self.cl is not None and len(self.data) == self.cl:
            self.end = EOF

    @precondition(lambda self: self.writer_open and self.cl is not None)
    @rule()
    def write_to_length(self):
        rest = b"x\n" * self.cl
        self.write(rest[: self.cl - len(self.data)])

    @precondition(lambda self: self.writer_open)
    @rule()
    def close(self):
        self.writer_open = False
        if self.cl is not None and len(self.data) < self.cl:
            with pytest.raises(bodypipe.IncompleteBody):
                self.w.close()
            self.end, self.reason = ABORTED, INCOMPLETE
        else:
            self.w.close()
            self.end = EOF

    @precondition(lambda self: self.writer_open)
    @rule()
    def abort(self):
        self.writer_open = False
        self.w.abort("model abort")
        if self.end == OPEN:
            self.end, self.reason = ABORTED, "model abort"

    # --- the reads ------------------------------------------------------------------------

    @rule(n=st.none() | sizes)
    def read_nonblock(self, n):
        got = run(lambda: self.b.read_nonblock(n))
        u = self.unread()
        expect = Outcome(value=self.take(len(u) if n is None else n)) if u else self.nothing_left(Outcome(value=b""))
        self.check(got, expect)

    @rule(n=sizes)
    def read_n(self, n):
        got = run(lambda: self.b.read(n))
        u = self.unread()
        if len(u) >= n:
            expect = Outcome(value=self.take(n))
        elif self.end == OPEN:
            expect = self.timeout()  # waits for all n: consumes nothing
        elif self.end == EOF:
            expect = Outcome(value=self.take(len(u)))
        else:
            expect = Outcome(exc=bodypipe.BodyAborted, partial=self.take(len(u)))
        self.check(got, expect)

    @rule()
    def read_all(self):
        got = run(lambda: self.b.read())
        u = self.unread()
        if self.end == OPEN:
            expect = self.timeout()
        elif self.end == EOF:
            expect = Outcome(value=self.take(len(u)))
        else:
            expect = Outcome(exc=bodypipe.BodyAborted, partial=self.take(len(u)))
        self.check(got, expect)

    @rule(n=st.none() | sizes, into=st.booleans())
    def read1(self, n, into):
        if into:
            target = bytearray(n or 20)
            got = run(lambda: bytes(target[: self.b.readinto(target)]))
            n = len(target)
        else:
            got = run(lambda: self.b.read1(n))
        u = self.unread()
        expect = Outcome(value=self.take(len(u) if n is None else n)) if u else self.nothing_left(self.timeout())
        self.check(got, expect)

    @rule(limit=st.none() | sizes)
    def readline(self, limit):
        got = run(lambda: self.b.readline(limit))
        self.check(got, self.expect_line(limit))

    def expect_line(self, limit):
        u = self.unread()
        lim = len(u) + 1 if limit is None else limit
        window = u[:lim]
        if b"\n" in window:
            return Outcome(value=self.take(window.index(b"\n") + 1))
        if len(u) >= lim:
            return Outcome(value=self.take(lim))
        if self.end == OPEN:
            return self.timeout()  # waits for the whole line: consumes nothing
        if self.end == EOF:
            return Outcome(value=self.take(len(u)))
        # Aborted: an incomplete last line is no line.
        return Outcome(exc=bodypipe.BodyAborted, partial=self.take(len(u)))

    @rule()
    def next_line(self):
        def call():
            try:
                return next(self.b)
            except StopIteration:
                return "stop"

        got = run(call)
        expect = self.expect_line(None)
        if expect.value == b"":
            expect = Outcome(value="stop")
        self.check(got, expect)

    @rule(n=st.none() | sizes)
    def aread(self, n):
        async def call():
            # Only awaits what is there: an open stream with nothing there would park.
            return await self.b.aread(n)

        u = self.unread()
        if self.end == OPEN and (not u or n is None):
            return
        got = run(lambda: asyncio.run(call()))
        if n is None:
            expect = Outcome(value=self.take(len(u))) if self.end == EOF else Outcome(
                exc=bodypipe.BodyAborted, partial=self.take(len(u)))
        else:
            expect = Outcome(value=self.take(n)) if u else self.nothing_left(None)
        self.check(got, expect)

    @rule(n=st.integers(min_value=0, max_value=20))
    def peek(self, n):
        got = run(lambda: self.b.peek(n))
        u = self.unread()
        if u:
            expect = Outcome(value=u[: n or len(u)])
        else:
            expect = self.nothing_left(self.timeout())
        self.check(got, expect)

    @rule(offset=st.integers(min_value=0, max_value=80))
    def seek(self, offset):
        if offset <= len(self.data):
            assert self.b.seek(offset) == offset
            self.pos = offset
        else:
            with pytest.raises(ValueError):
                self.b.seek(offset)

    @invariant()
    def counters_and_end(self):
        if not hasattr(self, "b"):
            return
        assert self.b.tell() == self.pos
        assert self.b.readable_amount() == len(self.data) - self.pos
        drained = self.pos == len(self.data)
        if self.end == ABORTED and drained:
            with pytest.raises(bodypipe.BodyAborted) as ei:
                self.b.at_eof()
            assert ei.value.reason == self.reason
        else:
            assert self.b.at_eof() == (self.end == EOF and drained)


Body.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestBody = Body.TestCase
