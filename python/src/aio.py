"""bodypipe._aio: the coroutines behind PyBuffer.aread/areadline/areadexactly/__anext__ and
Writer.awrite/wait_writable.

Compiled into the extension (python/src/aio.rs) and run on first use. Each event loop gets one
_LoopWaiters: one wake-up fd (a bodypipe._Notifier, watched with loop.add_reader) and the futures
of that loop's parked reads. A read that cannot finish now parks: it registers a future under a
fresh id and asks the buffer (_arm) for a core readiness subscription of its own, which has the
writer's thread put that id on the notifier's queue and signal the fd once `min` bytes are
unread or the stream has ended (any number per reader: wrappers and loops never displace each
other). The loop's reader
callback drains the queue and resolves the futures; the woken read retries from the start (another
reader may have taken the bytes; a wake-up is a hint, never a promise).

Nothing is consumed before the final, non-waiting read of a call, so a cancelled call (task
cancel, asyncio.timeout) loses nothing; the exceptions are ring mode (max_buffered) reads that
need more than max_buffered bytes (areadexactly(n), aread(-1) with no content length, a line
longer than max_buffered), which must consume as they go, as their blocking versions do.
"""

import asyncio
import sys
import weakref

# Filled in by aio.rs: bodypipe.BodyAborted, bodypipe._Notifier, the gather buffer of aread().
BodyAborted = None
_Notifier = None
_Gather = None

# "Wake me only at the end of the stream": a threshold no body reaches (the core caps bodies at
# 1 GiB by default, and the threshold counts unread bytes, which fit in memory).
_END = sys.maxsize

_IncompleteReadError = asyncio.IncompleteReadError
_get_running_loop = asyncio.get_running_loop

# loop -> _LoopWaiters. Weak keys: a loop that is gone takes its registry (and, once no armed
# callback holds it, its fd) with it. The registry must not refer to the loop.
_registries = weakref.WeakKeyDictionary()


class _LoopWaiters:
    __slots__ = ("notifier", "futures", "next_id", "__weakref__")

    def __init__(self, loop):
        self.notifier = _Notifier()
        self.futures = {}
        self.next_id = 0
        loop.add_reader(self.notifier.fileno(), self._drain)

    def _drain(self):
        futures = self.futures
        for wid in self.notifier.drain():
            fut = futures.pop(wid, None)
            if fut is not None and not fut.done():
                fut.set_result(None)


def _registry(loop):
    reg = _registries.get(loop)
    if reg is None:
        reg = _registries[loop] = _LoopWaiters(loop)
    return reg


async def _wait(buf, min_bytes):
    """Park until `min_bytes` are unread in `buf`, its stream has ended, or it was closed."""
    await _park(buf._arm, buf._disarm, min_bytes)


async def _park(arm, disarm, *args):
    """Park until the core subscription that `arm(notifier, wid, *args)` makes fires."""
    loop = _get_running_loop()
    reg = _registries.get(loop) or _registry(loop)
    reg.next_id = wid = reg.next_id + 1
    fut = loop.create_future()
    reg.futures[wid] = fut
    try:
        armed = arm(reg.notifier, wid, *args)
    except BaseException:
        del reg.futures[wid]
        raise
    try:
        await fut
    finally:
        # Still registered: not woken (cancelled). Unpark: the core removes the subscription
        # unfired, or it has just fired and its id finds no future in the drain.
        if reg.futures.pop(wid, None) is not None:
            disarm(armed)


def _with_partial(exc, parts):
    exc.partial = b"".join(parts)


async def aread(buf, n):
    """n is None (everything up to EOF) or an int >= 0 (parsed by the Rust wrapper)."""
    if n is None:
        return await _read_all(buf)
    if n == 0:
        return b""
    while True:
        data = buf._try_read1(n)
        if data is not None:
            return data
        await _wait(buf, 1)


async def _read_all(buf):
    if buf._max_buffered() is None:
        # The pipe holds the whole body: wait for its end, consuming nothing, then copy once.
        while not buf._ended():
            await _wait(buf, _END)
        return buf.read()  # everything is there: never waits
    # Ring mode: the writer cannot finish until we make room, so gather as it comes, in pieces
    # that follow the bytes and are copied once into the result (never twice the body in
    # memory). After an abort the bytes gathered are on the exception's `partial`.
    gathered = _Gather()
    while True:
        got = buf._try_gather(gathered)
        if got is None:
            await _wait(buf, 1)
        elif not got:
            return gathered.finish()


async def areadline(buf, limit):
    """limit is None or an int >= 0 (parsed by the Rust wrapper)."""
    if limit == 0:
        return b""
    parts = None
    while True:
        try:
            got = buf._try_readline(limit)
        except BodyAborted as e:
            if parts:
                # The line's earlier parts, then the incomplete rest the failing call took.
                _with_partial(e, parts + [e.partial])
            raise
        kind = got.__class__
        if kind is bytes:
            if parts:
                parts.append(got)
                return b"".join(parts)
            return got
        if kind is int:
            await _wait(buf, got)
        else:
            # Ring mode, a line longer than max_buffered: consumed as it arrives.
            chunk = got[0]
            if parts is None:
                parts = []
            parts.append(chunk)
            if limit is not None:
                limit -= len(chunk)


async def areadexactly(buf, n):
    """n is an int >= 0 (checked by the Rust wrapper)."""
    if n == 0:
        return b""
    cap = buf._max_buffered()
    parts = []
    need = n
    try:
        while need:
            want = need if cap is None else min(need, cap)
            if buf.readable_amount() < want and not buf._ended():
                await _wait(buf, want)
                continue
            # All `want` bytes in one step (one contiguous slice) when they can all be
            # buffered; in ring mode beyond max_buffered, what is there, step by step.
            chunk = buf._try_read_exact(need) if want == need else buf._try_read1(need)
            if chunk is None:
                continue  # another reader took the bytes
            if not chunk:
                raise _IncompleteReadError(b"".join(parts), n)
            parts.append(chunk)
            need -= len(chunk)
    except BodyAborted as e:
        _with_partial(e, parts)
        raise
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def anext(buf):
    line = await areadline(buf, None)
    if not line:
        raise StopAsyncIteration
    return line


async def wait_writable(writer):
    """Until a write would be admitted; BrokenPipeError once the reader closed (from _has_room)."""
    while not writer._has_room():
        await _park(writer._arm_writable, writer._disarm_writable)


async def awrite(writer, data):
    """Writes `data` whole, parking while the ring is full; returns its length in bytes."""
    while True:
        n = writer._try_write(data)
        if n is not None:
            return n
        await wait_writable(writer)
