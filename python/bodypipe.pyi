"""bodypipe: a streaming, zero-copy, file-like ``wsgi.input`` backed by a Rust byte pipe.

A body is created with :func:`pipe`, which returns a :class:`Writer` (for the server thread that
receives the request) and a :class:`PyBuffer` (the ``wsgi.input`` the application reads).

Blocking reads release the GIL and wait in 50 ms slices, checking signals between them, so other
threads run and Ctrl-C interrupts a blocked read. Timeouts (``settimeout``) raise
``TimeoutError``; bytes a timed-out call had already consumed are attached to the exception as
``exc.partial`` (``b''`` when none were: most waits happen before anything is consumed).

Async code awaits ``aread``/``areadline``/``areadexactly`` or iterates with ``async for``: they
return at once when the data is there and otherwise park on the event loop (asyncio or uvloop)
until the writer's thread signals one wake-up fd per loop; no thread and no polling per reader.
"""

import io
from collections.abc import AsyncIterator, Iterable, Iterator
from types import TracebackType
from typing import BinaryIO, SupportsIndex, final

from typing_extensions import Buffer

__all__ = ["pipe", "PyBuffer", "Writer", "Stats", "_Notifier", "_Armed", "BodyAborted", "IncompleteBody", "__version__"]

__version__: str

class BodyAborted(ConnectionAbortedError):
    """The producer aborted the body (client disconnect, upstream error), or closed it short of
    its declared length (reason ``"incomplete body"``).

    Raised by every read (and ``at_eof()``, ``peek()``) once the data written before the abort
    has been read. A read that would otherwise return a truncated result (``read()``,
    ``read(n)`` ending short, a last line without its newline) raises instead and attaches the
    bytes it consumed as ``partial``. ``partial`` is always there: ``b''`` when the raising call
    consumed nothing (and on an exception raised by Python code).
    """

    @property
    def reason(self) -> str:
        """The reason the producer gave (also ``str(exc)``)."""
    partial: bytes

class IncompleteBody(ValueError):
    """Raised by :meth:`Writer.close` when fewer bytes were written than the declared
    ``content_length``. The body is ended all the same, as an abort: readers get the bytes
    written, then :class:`BodyAborted` with the reason ``"incomplete body"``."""

    written: int
    """Bytes written."""
    expected: int
    """The declared length."""

def pipe(
    content_length: int | None = None,
    *,
    max_buffered: int | None = None,
    max_size: int | None = None,
    segment_size: int | None = None,
) -> tuple[Writer, PyBuffer]:
    """Create a body and return ``(writer, reader)``.

    :param content_length: declared length; the body ends (EOF) when that many bytes are
        written. A promise, not an allocation: memory follows the bytes written. Closing the
        writer before it is reached raises :class:`IncompleteBody`, and readers get
        :class:`BodyAborted`.
    :param max_buffered: ring mode: ``Writer.write`` waits while this many bytes are unread.
    :param max_size: maximum body size in bytes (default 1 GiB).
    :param segment_size: tuning and tests: the size of every storage segment.
    :raises ValueError: negative values, ``max_buffered=0``, ``segment_size=0``, or ``content_length > max_size``.
    """

@final
class Writer:
    """The producer side of a body. Use as a context manager: an exception inside the block
    aborts the body with the exception as the reason; a normal exit closes it (EOF)."""

    def write(self, data: Buffer) -> int:
        """Append ``data`` whole and return its length. In ring mode, waits (GIL released) while
        the buffer is at its high-water mark. Nothing of a failed write is stored.

        :raises TypeError: ``data`` is not bytes-like.
        :raises ValueError: past ``content_length``/``max_size``, or after ``close()``/``abort()``.
        :raises BrokenPipeError: the reader side has closed.
        :raises MemoryError: allocation failed.
        """
    def try_write(self, data: Buffer) -> bool:
        """Like :meth:`write` but returns False (storing nothing) instead of waiting when full."""
    async def awrite(self, data: Buffer) -> int:
        """Like :meth:`write`, for asyncio: append ``data`` whole and return its length, waiting
        without blocking the event loop while the buffer is at its high-water mark (ring mode).

        :raises BrokenPipeError: the reader side has closed (also while waiting).
        :raises ValueError: past ``content_length``/``max_size``, or after ``close()``/``abort()``.
        """
    async def wait_writable(self) -> None:
        """Return once a write would be admitted: at once outside ring mode or below the
        high-water mark, else when the reader has brought unread bytes below half of
        ``max_buffered``. Never blocks the event loop; cancel it like any awaitable.

        :raises BrokenPipeError: the reader side has closed.
        :raises ValueError: after ``close()``/``abort()``.
        """
    def close(self) -> None:
        """End the body normally: readers get all data, then EOF. Idempotent.

        :raises IncompleteBody: fewer bytes were written than the declared ``content_length``;
            the body is ended anyway, as an abort (readers get ``BodyAborted("incomplete body")``).
        """
    def abort(self, reason: str = "aborted") -> None:
        """End the body with an error: readers get the data written so far, then
        :class:`BodyAborted` with ``reason``. A no-op once closed."""
    @property
    def closed(self) -> bool:
        """True once :meth:`close` or :meth:`abort` was called."""
    @property
    def written(self) -> int:
        """Bytes written so far (0 once closed)."""
    @property
    def buffered(self) -> int:
        """Bytes written but not yet read (0 once closed)."""
    @property
    def reader_closed(self) -> bool:
        """True once the reader hung up (further writes raise ``BrokenPipeError``); still
        answered once this writer is closed (True once the reader object is gone)."""
    def __enter__(self) -> Writer: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        _tb: TracebackType | None = None,
    ) -> bool:
        """Closes the body (which may raise :class:`IncompleteBody`), or aborts it with the
        exception as the reason if the block raised."""

@final
class Stats:
    """A snapshot of a body's counters, from :meth:`PyBuffer.stats` (Erlang: ``py_buffer:info/1``).
    Equal when every counter is."""

    @property
    def written(self) -> int:
        """Bytes written so far."""
    @property
    def position(self) -> int:
        """Bytes read so far (the read position)."""
    @property
    def buffered(self) -> int:
        """Bytes written and not read."""
    @property
    def content_length(self) -> int | None:
        """The declared length, or None."""
    @property
    def max_buffered(self) -> int | None:
        """The high-water mark (ring mode), or None."""
    @property
    def eof(self) -> bool:
        """The body ended cleanly (``close()``, or the declared length reached)."""
    @property
    def aborted(self) -> bool:
        """The body was aborted."""
    @property
    def reader_closed(self) -> bool:
        """The reader side was closed."""
    @property
    def reader_wakes(self) -> int:
        """Wake syscalls made for parked readers: about one per blocking read that had to park, however
        many writes fed it."""
    @property
    def writer_wakes(self) -> int:
        """Wake syscalls made for a writer parked for room (ring mode)."""
    @property
    def reader_waiting(self) -> bool:
        """A blocking read is parked, or about to park, waiting for bytes (a wait that ended without
        being woken, by a timeout or by finding its bytes just before parking, leaves this True
        until the next write)."""
    @property
    def writer_waiting(self) -> bool:
        """The writer is parked, or about to park, waiting for room (as ``reader_waiting``)."""


@final
class PyBuffer(io.RawIOBase, BinaryIO):
    """The reader side of a body: a read-only, seekable, file-like object for ``wsgi.input``.

    Registered as a virtual subclass of ``io.RawIOBase``; supports weak references. Any number
    of threads may read one buffer; they share one cursor and never duplicate or lose bytes, and
    each read call returns one contiguous slice of the stream (except, in ring mode, a
    ``read()``/``read(n)``/line larger than ``max_buffered``, which must be consumed as it
    arrives; other threads' reads may then come between its steps).

    Sizes: ``None`` or a negative size means "all"; a non-integer size raises ``TypeError``.
    ``memoryview(buf)`` exposes the unread bytes present now (read-only, 1-D, format ``B``),
    zero-copy when they lie in one segment (segments grow with the bytes written, 4 KiB doubling
    to 8 MiB; a body from :meth:`from_bytes` is one segment), else one coalesced copy; it stays
    valid while writes continue and after the buffer object is dropped, and pins only its own
    segment. :meth:`views` is always zero-copy.
    """

    @classmethod
    def from_bytes(cls, data: Buffer) -> PyBuffer:
        """A buffer already holding ``data`` (in one segment) and at EOF."""
    @classmethod
    def _test_create(cls, data: Buffer | None = None, content_length: int = ...) -> PyBuffer:
        """Compatibility with the reference's tests: a buffer holding ``data``, not at EOF, that
        nothing can add to; :meth:`close` ends it."""
    def read(self, size: SupportsIndex | None = None) -> bytes:
        """``read()``: everything up to EOF. ``read(n)``: exactly ``n`` bytes unless EOF comes first.
        ``read(0)``: ``b''`` at once. Blocks (GIL released) as needed.

        :raises BodyAborted: the body was aborted before the requested bytes arrived.
        :raises TimeoutError: the timeout passed (see ``partial``).
        """
    def readall(self) -> bytes:
        """Everything up to EOF (same as ``read()``)."""
    def read1(self, size: SupportsIndex | None = None) -> bytes:
        """Up to ``size`` bytes, returning as soon as at least one is there; ``b''`` only at EOF."""
    def read_nonblock(self, size: SupportsIndex | None = None) -> bytes:
        """Up to ``size`` of the bytes there now; never blocks; ``b''`` when none."""
    def readinto(self, b: Buffer) -> int:
        """Read into a writable bytes-like object, returning as soon as at least one byte is
        there; 0 only at EOF (or for an empty buffer)."""
    def readinto1(self, b: Buffer) -> int:
        """Same as :meth:`readinto`."""
    def readline(self, size: SupportsIndex | None = None) -> bytes:
        """One line including ``b'\\n'``, at most ``size`` bytes; the rest at EOF; ``b''`` at EOF.

        :raises BodyAborted: after an abort, for a last line without its newline (its bytes on
            ``partial``), and once every byte before the abort is read.
        """
    def readlines(self, hint: SupportsIndex | None = None) -> list[bytes]:
        """Remaining lines; stops once their total length reaches ``hint`` (when positive).

        :raises BodyAborted: the body was aborted; ``partial`` holds the lines read (joined).
        :raises TimeoutError: the timeout passed; ``partial`` holds the lines read (joined) and
            any part of the line being read.
        """
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...
    async def aread(self, n: SupportsIndex | None = None) -> bytes:
        """Up to ``n`` bytes, as soon as at least one is there (as ``asyncio.StreamReader.read``);
        ``b''`` only at EOF. ``None``/negative: everything up to EOF. ``aread(0)``: ``b''``.

        Waits without blocking the event loop: the read parks until the writer's thread signals
        the loop's one wake-up fd (an ``eventfd`` watched with ``loop.add_reader``, shared by all
        of the loop's parked reads). Cancelling the awaiting task (``task.cancel()``,
        ``asyncio.timeout(...)``, ``asyncio.wait_for``) consumes nothing: the next read gets the
        bytes. ``settimeout()`` does not apply; use ``asyncio.timeout``. Ring mode
        (``max_buffered``) with ``n`` negative and no content length consumes as data arrives;
        bytes gathered before a cancellation are then lost (they are on ``BodyAborted.partial``
        after an abort).

        :raises BodyAborted: after the data written before an abort was read; for ``aread()``
            (everything) as soon as the abort is reached, with the bytes it consumed as ``partial``.
        """
    async def areadline(self, size: SupportsIndex | None = None) -> bytes:
        """One line including ``b'\\n'``, at most ``size`` bytes; the rest at EOF; ``b''`` at EOF.
        Waits (without blocking the loop) for the whole line; nothing is consumed before, so a
        cancelled call loses nothing, except in ring mode for a line longer than ``max_buffered``,
        which is consumed as it arrives (as ``readline`` does).

        :raises BodyAborted: once the data written before an abort was read; for a last line
            without its newline at once, with its bytes as ``partial``.
        """
    async def areadexactly(self, n: SupportsIndex) -> bytes:
        """Exactly ``n`` bytes (as ``asyncio.StreamReader.readexactly``). Waits for all of them
        before consuming any (ring mode: for ``max_buffered`` at a time).

        :raises asyncio.IncompleteReadError: EOF came first (``partial`` holds the bytes read).
        :raises BodyAborted: the body was aborted first (``partial`` holds the bytes read).
        :raises ValueError: ``n < 0``.
        :raises TypeError: ``n`` is not an integer.
        :raises OverflowError: ``n`` is too large for a size (as ``read``).
        """
    def __aiter__(self) -> AsyncIterator[bytes]:
        """``async for line in buf``: lines as :meth:`areadline` returns them, until EOF."""
    async def __anext__(self) -> bytes: ...
    def peek(self, size: int = 0) -> bytes:
        """Up to ``size`` unread bytes (all there now if ``size <= 0``) without consuming them;
        waits for at least one byte unless at EOF (``b''``).

        :raises BodyAborted: the body was aborted and every byte before the abort is read.
        """
    def readable_amount(self) -> int:
        """Bytes that can be read now without blocking."""
    def stats(self) -> Stats:
        """A snapshot of the body's counters (lines iteration took ahead count as unread)."""
    def at_eof(self) -> bool:
        """True once the body ended cleanly (EOF, or :meth:`close`) and every byte was read.

        An aborted body has no end of file: once every byte before the abort is read this raises
        :class:`BodyAborted`, so a polling loop ``while not buf.at_eof(): ...`` raises instead of
        ending with a truncated body (False while bytes are left).
        """
    def seek(self, offset: int, whence: int = 0) -> int:
        """Move within the written data (ring mode: the retained window); return the new position.

        ``seek(0, SEEK_END)`` of a body of known length (a declared ``content_length``, or a body
        that has ended) goes to its end even before the bytes are all here, consuming nothing:
        reads there see EOF, and a seek back resumes where reading was. So clients that size a
        file with ``tell()``, ``seek(0, 2)``, ``tell()``, ``seek(back)`` (requests, httpx) send
        the right ``Content-Length`` and then the whole body.

        :raises io.UnsupportedOperation: ``whence=2`` while the length is not known (clients
            then stream the body chunked), a target not written yet, or before the retained
            window (ring mode). It is an ``OSError`` and a ``ValueError``.
        :raises ValueError: a negative position or a bad ``whence``.
        :raises BodyAborted: ``whence=2`` on an aborted body, which has no end.
        """
    def tell(self) -> int:
        """The read position (the body's length after ``seek(0, SEEK_END)``)."""
    def find(self, sub: Buffer | int, start: int | None = None, end: int | None = None) -> int:
        """Offset of ``sub`` in the unread bytes present now, relative to the read position,
        within ``[start, end)`` (negative bounds count from the end, ``None`` is the start or
        the end, as ``bytes.find``); -1 if absent. Never blocks."""
    def views(self) -> list[memoryview]:
        """Zero-copy memoryviews, one per segment of the unread bytes present now."""
    def settimeout(self, value: float | None) -> None:
        """Timeout in seconds for blocking reads (``None``: block forever; 0: never wait).

        :raises OverflowError: ``value`` is infinite or too large for a timeout (as
            ``socket.settimeout``; ``None`` means no timeout).
        :raises ValueError: ``value`` is negative or NaN.
        """
    def gettimeout(self) -> float | None: ...
    def readable(self) -> bool: ...
    def writable(self) -> bool: ...
    def seekable(self) -> bool: ...
    def isatty(self) -> bool: ...
    def flush(self) -> None: ...
    def fileno(self) -> int:
        """Always raises ``io.UnsupportedOperation``."""
    def truncate(self, size: int | None = None, /) -> int:
        """Always raises ``io.UnsupportedOperation``: a body is read-only."""
    def write(self, b: Buffer, /) -> int:
        """Always raises ``io.UnsupportedOperation``: bodies are written through a :class:`Writer`."""
    def writelines(self, lines: Iterable[Buffer], /) -> None:
        """Always raises ``io.UnsupportedOperation``."""
    @property
    def mode(self) -> str:
        """``"rb"``."""
    def close(self) -> None:
        """The reader hangs up: data already written can still be read, then ``b''``; reads
        never block again; the writer's next write raises ``BrokenPipeError``. Idempotent."""
    @property
    def closed(self) -> bool:
        """True after :meth:`close` (not after the writer's EOF)."""
    @property
    def content_length(self) -> int | None:
        """The declared length, if any."""
    def __bool__(self) -> bool:
        """Always True (an empty buffer is still a live stream)."""
    def __enter__(self) -> PyBuffer: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None:
        """Closes the buffer (the reader side); exceptions propagate."""
    # Declared for type checkers (memoryview(buf), bytes(buf)): the runtime exposes the buffer
    # protocol through the C slot, which Python 3.11 does not surface as a `__buffer__` method.
    def __buffer__(self, flags: int, /) -> memoryview: ...

@final
class _Notifier:
    """Internal to the asyncio readers: one event loop's wake-up fd and ready queue."""

    def __init__(self) -> None: ...
    def fileno(self) -> int:
        """The descriptor to watch with ``loop.add_reader``."""
    def drain(self) -> list[int]:
        """Clears the fd, then returns (and forgets) the ids of the waits that became ready."""

@final
class _Armed:
    """Internal to the asyncio readers: one armed core readiness subscription."""
