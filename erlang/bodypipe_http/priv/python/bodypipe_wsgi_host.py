"""The Python half of bodypipe's WSGI bridge (driven by ``bodypipe_wsgi.erl``).

Erlang builds the CGI part of the environ (binary values arrive as ``bytes`` and are decoded
here as latin-1, PEP 3333's "bytes as native strings"), puts the request's ``py_buffer`` in
``wsgi.input`` (it arrives as ``erlang.PyBuffer``) and calls :func:`run`. The result is
``(status, headers, chunks, more)``: ``chunks`` are the body blocks produced so far (``write()``
calls and the iterable up to its first non-empty block, or all of it for a list/tuple), ``more``
is ``None`` when the response is complete, else a :class:`Response` that Erlang steps with
``next()`` (one non-empty block per call, ``None`` at the end) and ``close()`` when the client
goes away. The iterable's ``close()`` is always called (PEP 3333); if it raises, the traceback
goes to ``wsgi.errors`` and the response is still complete.

``start_response`` checks what will be written to the socket: header names must be RFC 9110
tokens, header values and the status free of control characters (CR, LF, NUL, ... ; HTAB is
allowed) and of anything outside latin-1, the status a final one (``"200 OK"``: three digits,
100-199 refused since they are not final), ``Content-Length`` a run of digits (identical repeats
are merged). A violation raises ``ValueError`` in the application; uncaught, it is a 500. The
status and headers go to Erlang as latin-1 ``bytes``. Blocks go to Erlang at most
``MAX_BLOCK`` bytes at a time (a larger block is sent in slices over several steps), so a huge
``bytes`` object returned by an application never has to be copied into one Erlang binary.

Aborts are not errors. When the server aborts a request's body (the client went away, the body
is larger than ``max_body``, a timeout), the server has answered or there is nobody left to
answer, and it logs that in one line of its own. So an app that then lets ``BodyAborted`` escape
gets no traceback and no 500 (a quiet 400 that the server drops), and ``wsgi.errors`` (an
:class:`ErrorStream` over ``sys.stderr``) drops what the app writes about it once the body is
aborted: the tracebacks Flask, Falcon and Bottle log for the exception they caught.

``environ["bodypipe.progress"]`` is the body's upload progress (``bodypipe_progress.Progress``:
``received``, ``expected``, ``done``).
"""

import collections
import contextvars
import importlib
import re
import sys
import traceback
import warnings

from bodypipe import BodyAborted
from bodypipe_progress import Progress

__all__ = ["load", "run", "Response", "ErrorStream", "MAX_BLOCK"]

MAX_BLOCK = 1 << 20

_apps = {}

# RFC 9110 §5.6.2 token; field values and reason phrases: HTAB, SP, VCHAR, obs-text.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*\Z")
_STATUS = re.compile(r"[2-5][0-9][0-9] [\t\x20-\x7e\x80-\xff]*\Z")
_DIGITS = re.compile(r"[0-9]+\Z")

_HOP_BY_HOP = frozenset(
    ["connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
     "transfer-encoding", "upgrade"]
)


def load(name, spec, validate=False):
    """Import the WSGI callable ``spec`` (``"module:attr"``, attr defaults to ``application``)
    and register it as ``name``; with ``validate`` wrap it in ``wsgiref.validate.validator``
    and turn its warnings into errors."""
    if isinstance(name, bytes):
        name = name.decode()
    if isinstance(spec, bytes):
        spec = spec.decode()
    mod, _, attr = spec.partition(":")
    app = importlib.import_module(mod)
    for part in (attr or "application").split("."):
        app = getattr(app, part)
    if validate:
        from wsgiref.validate import WSGIWarning, validator

        warnings.simplefilter("error", WSGIWarning)
        app = validator(app)
    _apps[name] = app
    return name


def body_aborted(buf):
    """Whether the server aborted the body ``buf`` (its reader sees BodyAborted at its end)."""
    at_eof = getattr(buf, "at_eof", None)
    if at_eof is None:
        return False
    try:
        at_eof()
    except BodyAborted:
        return True
    return False


class ErrorStream:
    """``wsgi.errors``: ``sys.stderr`` (looked up at each write), mute once the request's body
    was aborted by the server (see the module docstring)."""

    __slots__ = ("_input",)

    def __init__(self, body):
        self._input = body

    def _stream(self):
        return None if body_aborted(self._input) else sys.stderr

    def write(self, text):
        stream = self._stream()
        if stream is not None:
            stream.write(text)

    def writelines(self, lines):
        stream = self._stream()
        if stream is not None:
            stream.writelines(lines)

    def flush(self):
        stream = self._stream()
        if stream is not None:
            stream.flush()


def _aborted_response():
    # Nobody reads this: the server has answered (413, 408, 503) or the client is gone.
    body = b"request body aborted\n"
    headers = [(b"Content-Type", b"text/plain"), (b"Content-Length", b"%d" % len(body))]
    return (b"400 Bad Request", headers, [body], None)


def _error_response(environ, body):
    if body_aborted(body):
        return _aborted_response()
    try:
        traceback.print_exc(file=environ.get("wsgi.errors", sys.stderr))
    except Exception:  # pragma: no cover - the error stream itself failed
        pass
    body = b"Internal Server Error\n"
    headers = [(b"Content-Type", b"text/plain"), (b"Content-Length", b"%d" % len(body))]
    return (b"500 Internal Server Error", headers, [body], None)


class Response:
    """One WSGI call: ``start_response``, ``write`` and the response iterable."""

    __slots__ = ("environ", "status", "headers", "sent", "pending", "iterable", "iterator",
                 "closed", "context")

    def __init__(self, environ):
        # Every step of one response runs in this context, whichever pool thread runs it, so
        # context variables set by the app (Flask's request context) stay consistent.
        self.context = contextvars.Context()
        self.environ = environ
        self.status = None
        self.headers = None
        self.sent = False
        self.pending = collections.deque()
        self.iterable = None
        self.iterator = None
        self.closed = False

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.status is not None:
            raise AssertionError("start_response called a second time without exc_info")
        if type(status) is not str:
            raise TypeError(f"the WSGI status must be str: {status!r}")
        if not _STATUS.match(status):
            raise ValueError(f"bad WSGI status {status!r} (want a final status like '200 OK', "
                             "without control characters)")
        clean = []
        length = None
        for name, value in headers:
            if type(name) is not str or type(value) is not str:
                raise TypeError(f"WSGI header names and values must be str: {name!r}: {value!r}")
            if not _TOKEN.match(name):
                raise ValueError(f"bad header name {name!r} (not an RFC 9110 token)")
            if not _FIELD_VALUE.match(value):
                raise ValueError(f"bad value for header {name!r}: {value!r} (control character "
                                 "or not latin-1)")
            lower = name.lower()
            if lower in _HOP_BY_HOP:
                continue  # the server owns the framing
            if lower == "content-length":
                value = value.strip(" \t")
                if not _DIGITS.match(value):
                    raise ValueError(f"bad Content-Length {value!r}")
                if length is not None:
                    if int(value) != length:
                        raise ValueError("two different Content-Length headers")
                    continue
                length = int(value)
                value = str(length)
            clean.append((name.encode("latin-1"), value.encode("latin-1")))
        self.status = status.encode("latin-1")
        self.headers = clean
        return self.write

    def write(self, data):
        """PEP 3333's legacy ``write()``: the data goes out with the next block."""
        if self.status is None:
            raise AssertionError("write() before start_response()")
        if type(data) is not bytes:
            data = bytes(data)
        if data:
            self.pending.append(data)

    def _take_pending(self):
        """Up to MAX_BLOCK bytes of the pending blocks (a larger block is sliced)."""
        out = []
        room = MAX_BLOCK
        pending = self.pending
        while pending and room > 0:
            block = pending.popleft()
            if len(block) > room:
                view = block if type(block) is memoryview else memoryview(block)
                pending.appendleft(view[room:])
                block = view[:room]
            room -= len(block)
            out.append(block if type(block) is bytes else bytes(block))
        return out

    def first(self, result):
        """Step the iterable to its first non-empty block (or its end)."""
        self.iterable = result
        if isinstance(result, (list, tuple)):
            self.pending.extend(c if type(c) is bytes else bytes(c) for c in result if c)
            chunks = self._take_pending()
            if self.pending:
                return self._headers_out(chunks, self)  # the rest in later steps
            self._close()
            return self._headers_out(chunks, None)
        self.iterator = iter(result)
        while not self.pending:
            block = next(self.iterator, None)
            if block is None:
                self.iterator = None
                break
            if block:
                self.pending.append(block if type(block) is bytes else bytes(block))
        chunks = self._take_pending()
        if self.iterator is None and not self.pending:
            self._close()
            return self._headers_out(chunks, None)
        return self._headers_out(chunks, self)

    def _headers_out(self, chunks, more):
        if self.status is None:
            raise AssertionError("the application did not call start_response()")
        self.sent = True
        return (self.status, self.headers, chunks, more)

    def next(self):
        """The next non-empty block, or ``None`` at the end (the iterable is then closed)."""
        return self.context.run(self._next)

    def _next(self):
        try:
            while True:
                if self.pending:
                    chunks = self._take_pending()
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
                if self.iterator is None:
                    self._close()
                    return None
                block = next(self.iterator, None)
                if block is None:
                    self.iterator = None
                    continue
                if block:
                    self.pending.append(block if type(block) is bytes else bytes(block))
        except BaseException:
            try:
                traceback.print_exc(file=self.environ.get("wsgi.errors", sys.stderr))
            finally:
                self._close()
            raise

    def close(self):
        """Calls the iterable's ``close()`` once (PEP 3333)."""
        if self.closed:
            return None
        return self.context.run(self._close)

    def _close(self):
        if self.closed:
            return None
        self.closed = True
        self.iterator = None
        self.pending.clear()
        close = getattr(self.iterable, "close", None)
        self.iterable = None
        if close is not None:
            try:
                close()
            except Exception:
                # The response is complete (or already cut short): the error is the app's
                # to fix, not the client's to see.
                print("bodypipe: the response iterable's close() raised:",
                      file=self.environ.get("wsgi.errors", sys.stderr))
                traceback.print_exc(file=self.environ.get("wsgi.errors", sys.stderr))
        return None


def run(name, environ):
    """Call the application registered as ``name``; see the module docstring."""
    for key, value in environ.items():
        if type(value) is bytes:
            environ[key] = value.decode("latin-1")
    body = environ.get("wsgi.input")
    environ["wsgi.errors"] = ErrorStream(body)
    if body is not None:
        length = environ.get("CONTENT_LENGTH")
        environ["bodypipe.progress"] = Progress(body, int(length) if length else None)
    environ["wsgi.version"] = (1, 0)
    if isinstance(name, bytes):
        name = name.decode()
    app = _apps[name]
    resp = Response(environ)
    try:
        result = resp.context.run(app, environ, resp.start_response)
    except Exception:
        return _error_response(environ, body)
    try:
        return resp.context.run(resp.first, result)
    except Exception:
        try:
            resp.close()
        except Exception:
            pass
        return _error_response(environ, body)
