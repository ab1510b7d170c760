"""The Python half of bodypipe's WSGI bridge (driven by ``bodypipe_wsgi.erl``).

Erlang builds the CGI part of the environ (binary values arrive as ``bytes`` and are decoded
here as latin-1, PEP 3333's "bytes as native strings"), puts the request's ``py_buffer`` in
``wsgi.input`` (it arrives as ``erlang.PyBuffer``) and calls :func:`run`. The result is
``(status, headers, chunks, more)``: ``chunks`` are the body blocks produced so far (``write()``
calls and the iterable up to its first non-empty block, or all of it for a list/tuple), ``more``
is ``None`` when the response is complete, else a :class:`Response` that Erlang steps with
``next()`` (one non-empty block per call, ``None`` at the end) and ``close()`` when the client
goes away. The iterable's ``close()`` is always called (PEP 3333).
"""

import contextvars
import importlib
import sys
import traceback
import warnings

__all__ = ["load", "run", "Response"]

_apps = {}

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


def _error_response(environ):
    try:
        traceback.print_exc(file=environ.get("wsgi.errors", sys.stderr))
    except Exception:  # pragma: no cover - the error stream itself failed
        pass
    body = b"Internal Server Error\n"
    headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    return ("500 Internal Server Error", headers, [body], None)


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
        self.pending = []
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
        if type(status) is not str or len(status) < 4 or not status[:3].isdigit():
            raise ValueError(f"bad WSGI status {status!r}")
        clean = []
        for name, value in headers:
            if type(name) is not str or type(value) is not str:
                raise TypeError(f"WSGI header names and values must be str: {name!r}: {value!r}")
            if name.lower() in _HOP_BY_HOP:
                continue  # the server owns the framing
            clean.append((name, value))
        self.status = status
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
        out, self.pending = self.pending, []
        return out

    def first(self, result):
        """Step the iterable to its first non-empty block (or its end)."""
        self.iterable = result
        if isinstance(result, (list, tuple)):
            chunks = self._take_pending()
            chunks.extend(c if type(c) is bytes else bytes(c) for c in result if c)
            self._close()
            return self._headers_out(chunks, None)
        self.iterator = iter(result)
        chunks = self._take_pending()
        while not chunks:
            block = next(self.iterator, None)
            if block is None:
                chunks = self._take_pending()
                self._close()
                return self._headers_out(chunks, None)
            if block:
                chunks = self._take_pending()
                chunks.append(block if type(block) is bytes else bytes(block))
            else:
                chunks = self._take_pending()
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
                    return b"".join(self._take_pending())
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
        close = getattr(self.iterable, "close", None)
        self.iterable = None
        if close is not None:
            close()
        return None


def run(name, environ):
    """Call the application registered as ``name``; see the module docstring."""
    for key, value in environ.items():
        if type(value) is bytes:
            environ[key] = value.decode("latin-1")
    environ["wsgi.errors"] = sys.stderr
    environ["wsgi.version"] = (1, 0)
    if isinstance(name, bytes):
        name = name.decode()
    app = _apps[name]
    resp = Response(environ)
    try:
        result = resp.context.run(app, environ, resp.start_response)
    except Exception:
        return _error_response(environ)
    try:
        return resp.context.run(resp.first, result)
    except Exception:
        try:
            resp.close()
        except Exception:
            pass
        return _error_response(environ)
