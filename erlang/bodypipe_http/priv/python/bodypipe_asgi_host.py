"""The Python half of bodypipe's ASGI 3 bridge (driven by ``bodypipe_asgi.erl``).

One asyncio loop per interpreter (that is, per worker VM; uvloop when it is installed) runs on a
thread of its own, started by the first :func:`load`. Every ASGI call is a task on that loop.

Erlang sees an ASGI call exactly as it sees a WSGI one (``bodypipe_wsgi_host``), so the
connection process drives both alike: :func:`run` (on a thread of the NIF's pool) schedules the
task and returns ``(status, headers, chunks, more)`` once the app has sent its
``http.response.start`` and its first body block (or has finished); ``more`` is ``None`` when the
response is complete, else the :class:`Call`, which Erlang steps with ``next()`` (one non-empty
block per call, ``None`` at the end) and ``close()`` when it will take no more.

- ``receive()`` yields ``http.request`` events read straight from the request's ``PyBuffer``
  with ``aread`` (``more_body`` true until the body's end), then, once the response is complete
  or Erlang closed the call, ``http.disconnect``. A body aborted by the server (the client went
  away, a limit was passed, a timeout) gives ``http.disconnect`` at once; so does a client that
  goes away after its body, while the app runs: the connection watches its socket and calls
  :func:`disconnect` with the token it put in the request (``bodypipe.token``), which reaches
  the call before Erlang holds it (before its first block). A call past the server's
  ``app_timeout`` is cancelled the same way (:func:`cancel`): its task gets
  ``asyncio.CancelledError`` at its current ``await``.
- ``send()`` hands each body block over and awaits until the connection process has taken it
  (has written it and asks for the next): one block in flight per request, so a fast app cannot
  fill the memory of a slow client. ``http.response.start`` does not wait (it is sent with the
  first block). After ``close()`` a ``send`` of a block that announces more raises
  :class:`ClientDisconnected` (an ``OSError``, as the ASGI spec asks), so an endless stream
  stops; a final block is accepted and dropped.
- Lifespan: :func:`startup` runs the app's ``lifespan`` scope up to ``startup.complete`` when
  the server starts, :func:`shutdown` sends ``lifespan.shutdown`` when it stops. An app that
  raises on the lifespan scope before receiving anything does not support it (the ASGI spec):
  that is logged in one line and the app is served without it. ``scope["state"]`` is a copy of
  the lifespan state in every request.
- Errors: an exception before ``http.response.start`` is a 500 (traceback on ``sys.stderr``);
  after it, the response is cut short. An exception that escapes after the server aborted the
  body or the connection took no more (the client went away, a 413) is the server's decision,
  not the app's bug: no traceback, no 500 (the server has answered or the client is gone).

``scope["extensions"]["bodypipe.progress"]`` is the body's upload progress
(``bodypipe_progress.Progress``).

The headers are the client's, as they came (lowercase names): a chunked body keeps its
``transfer-encoding: chunked`` and gets no ``content-length``; ASGI apps need no length, since
``more_body`` says where the body ends.
"""

import asyncio
import collections
import http
import importlib
import queue
import re
import sys
import threading
import traceback

from bodypipe import BodyAborted
from bodypipe_progress import Progress

__all__ = ["load", "loop", "run", "startup", "shutdown", "disconnect", "cancel", "Call",
           "ClientDisconnected", "MAX_BLOCK", "READ_SIZE"]

# Largest block handed to Erlang at once (a larger one goes over several steps, as in the WSGI
# host), and the largest http.request event.
MAX_BLOCK = 1 << 20
READ_SIZE = 64 * 1024

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*\Z")
_HOP_BY_HOP = frozenset(
    [b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
     b"trailers", b"transfer-encoding", b"upgrade"]
)

_apps = {}
# Calls in progress by their connection's token, until Erlang takes their last block or closes
# them; and the disconnects that came before their run() (both are calls on pool threads, so the
# later one can be picked up first), the oldest dropped past EARLY_MAX (a disconnect that comes
# after its call ended also lands there).
_live = {}
_early = collections.OrderedDict()
_live_lock = threading.Lock()
EARLY_MAX = 1024
_loop = None
_loop_lock = threading.Lock()


class ClientDisconnected(OSError):
    """``send()`` after the connection took its last block (the client is gone)."""


def _new_loop():
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _serve(loop, ready):
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    loop.run_forever()


def loop():
    """The interpreter's ASGI loop, started on first use."""
    global _loop
    with _loop_lock:
        if _loop is None:
            new = _new_loop()
            ready = threading.Event()
            threading.Thread(target=_serve, args=(new, ready), name="bodypipe-asgi",
                             daemon=True).start()
            ready.wait()
            _loop = new
        return _loop


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


class _App:
    __slots__ = ("app", "state", "lifespan")

    def __init__(self, app):
        self.app = app
        self.state = {}
        self.lifespan = None


def load(name, spec):
    """Import the ASGI 3 callable ``spec`` (``"module:attr"``, attr defaults to ``app``) and
    register it as ``name``. Starts the loop."""
    name, spec = _text(name), _text(spec)
    mod, _, attr = spec.partition(":")
    app = importlib.import_module(mod)
    for part in (attr or "app").split("."):
        app = getattr(app, part)
    if not callable(app):
        raise TypeError(f"{spec} is not callable")
    loop()
    _apps[name] = _App(app)
    return name


# ---------------------------------------------------------------------------------------------
# Lifespan.


class _Lifespan:
    """The app's lifespan task: its events in, its answers out (to a pool thread)."""

    def __init__(self, entry):
        self.entry = entry
        self.inbox = asyncio.Queue()
        self.answers = queue.SimpleQueue()
        self.received = False
        self.task = None

    async def receive(self):
        self.received = True
        return await self.inbox.get()

    async def send(self, message):
        self.answers.put((message.get("type"), message.get("message", "")))

    async def main(self):
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.3"},
                 "state": self.entry.state}
        try:
            await self.entry.app(scope, self.receive, self.send)
        except BaseException as e:  # noqa: BLE001 - reported to the waiting thread
            if not self.received:
                self.answers.put(("unsupported", f"{type(e).__name__}: {e}"))
            else:
                traceback.print_exc(file=sys.stderr)
                self.answers.put(("failed", f"{type(e).__name__}: {e}"))
        else:
            self.answers.put(("returned", ""))

    def start(self):
        self.task = asyncio.ensure_future(self.main())


def _answer(lifespan, want):
    kind, message = lifespan.answers.get()
    if kind == want:
        return True
    if kind == "unsupported":
        print(f"bodypipe: the ASGI app does not support lifespan ({message})", file=sys.stderr)
        return False
    if kind == "returned":
        return False  # the app ended its lifespan task without an answer
    raise RuntimeError(f"ASGI lifespan: {kind}: {message}")


def startup(name):
    """Runs the lifespan startup of app ``name``: True once the app sent
    ``lifespan.startup.complete``, False if it does not support lifespan; raises
    ``RuntimeError`` if it sent ``lifespan.startup.failed`` (or raised)."""
    entry = _apps[_text(name)]
    lifespan = _Lifespan(entry)
    lp = loop()
    lp.call_soon_threadsafe(lifespan.start)
    lp.call_soon_threadsafe(lifespan.inbox.put_nowait, {"type": "lifespan.startup"})
    if _answer(lifespan, "lifespan.startup.complete"):
        entry.lifespan = lifespan
        return True
    return False


def shutdown(name):
    """Sends ``lifespan.shutdown`` to app ``name`` and waits for its answer; True once the app
    sent ``lifespan.shutdown.complete`` (False if it ran no lifespan). The app is forgotten."""
    entry = _apps.pop(_text(name), None)
    if entry is None or entry.lifespan is None:
        return False
    lifespan = entry.lifespan
    entry.lifespan = None
    loop().call_soon_threadsafe(lifespan.inbox.put_nowait, {"type": "lifespan.shutdown"})
    return _answer(lifespan, "lifespan.shutdown.complete")


# ---------------------------------------------------------------------------------------------
# Requests.


def _status_line(status):
    if type(status) is not int or not 200 <= status <= 599:
        raise ValueError(f"bad ASGI status {status!r} (want a final status, 200-599)")
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return b"%d %s" % (status, phrase.encode("latin-1"))


def _response_headers(headers):
    clean = []
    length = None
    for pair in headers:
        name, value = bytes(pair[0]), bytes(pair[1])
        if not _TOKEN.match(name):
            raise ValueError(f"bad header name {name!r} (not an RFC 9110 token)")
        if not _FIELD_VALUE.match(value):
            raise ValueError(f"bad value for header {name!r}: {value!r} (control character)")
        lower = name.lower()
        if lower in _HOP_BY_HOP:
            continue  # the server owns the framing
        if lower == b"content-length":
            value = value.strip(b" \t")
            if not value.isdigit():
                raise ValueError(f"bad content-length {value!r}")
            if length is not None:
                if int(value) != length:
                    raise ValueError("two different content-length headers")
                continue
            length = int(value)
            value = b"%d" % length
        clean.append((name, value))
    return clean


def _aborted(buf):
    """Whether the server aborted the body (the reader then sees BodyAborted at its end)."""
    try:
        buf.at_eof()
    except BodyAborted:
        return True
    return False


class Call:
    """One ASGI request: the task on the loop and the hand-over to Erlang.

    Items from the loop to the pool thread stepping the response (``out``): ``("start", status,
    headers)``, ``("body", data, more)``, ``("end", failed)``. The loop-side state (``waiting``,
    ``gone``, ``closed``) is touched only on the loop; the pool side reaches it with
    ``call_soon_threadsafe``.
    """

    __slots__ = ("app", "scope", "buf", "loop", "out", "started", "finished", "waiting",
                 "gone", "closed", "body_ended", "abort_seen", "pending", "done", "status",
                 "headers", "task", "token", "reported")

    def __init__(self, app, scope, buf, lp):
        self.app = app
        self.scope = scope
        self.buf = buf
        self.loop = lp
        self.out = queue.SimpleQueue()
        # Loop side.
        self.started = False
        self.finished = False
        self.waiting = None        # the future a send() awaits
        self.gone = None           # asyncio.Event: response complete or connection closed
        self.closed = False        # Erlang takes no more blocks
        self.body_ended = False
        self.abort_seen = False    # receive() saw the server's abort
        self.task = None
        self.reported = False      # the ("end", ...) item is out
        # Pool side.
        self.pending = None        # the rest of a block longer than MAX_BLOCK
        self.done = False
        self.status = None
        self.headers = None
        self.token = None

    # -- on the loop ---------------------------------------------------------------------------

    def _start(self):
        self.gone = asyncio.Event()
        self.task = asyncio.ensure_future(self._main())
        self.task.add_done_callback(self._task_done)

    def _end(self, failed):
        self.reported = True
        self.out.put(("end", failed))

    async def _main(self):
        try:
            await self.app(self.scope, self.receive, self.send)
        except BaseException as e:  # noqa: BLE001 - every outcome goes to Erlang
            if self.abort_seen or self.closed or isinstance(e, BodyAborted) or _aborted(self.buf):
                # The server decided this request's fate (client gone, 413, timeout): no
                # traceback, it is no bug of the app's.
                self._end("aborted")
            else:
                traceback.print_exc(file=sys.stderr)
                self._end("raised")
            if isinstance(e, (KeyboardInterrupt, SystemExit, asyncio.CancelledError)):
                raise
        else:
            # An app that returns without a response after http.disconnect did right.
            self._end("aborted" if self.closed and not self.started else None)

    def _task_done(self, task):
        # A task cancelled before its first step never entered _main's try: the pool thread
        # waiting in first()/next() must still hear that the call is over.
        if not self.reported:
            self._end("aborted")

    def _disconnect(self):
        self._close_on_loop(False)

    def _cancel(self):
        """Erlang's app_timeout: the app's task is cancelled (CancelledError at its current
        await, so its finally blocks and context managers run); Erlang takes nothing more."""
        self._close_on_loop(False)
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def receive(self):
        if not self.body_ended:
            try:
                data = await self.buf.aread(READ_SIZE)
                more = bool(data) and not self.buf.at_eof()
            except BodyAborted:
                self.body_ended = True
                self.abort_seen = True
                return {"type": "http.disconnect"}
            if not more:
                self.body_ended = True
            return {"type": "http.request", "body": data, "more_body": more}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message):
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            status = _status_line(message["status"])
            headers = _response_headers(message.get("headers", ()))
            self.started = True
            self.out.put(("start", status, headers))
        elif kind == "http.response.body":
            if not self.started:
                raise RuntimeError("http.response.body before http.response.start")
            if self.finished:
                raise RuntimeError("http.response.body after the response's last block")
            body = message.get("body", b"")
            more = bool(message.get("more_body", False))
            if not more:
                self.finished = True
                self.out.put(("body", bytes(body), False))
                return
            if self.closed:
                raise ClientDisconnected("the connection takes no more of this response")
            if not body:
                return
            fut = self.waiting = self.loop.create_future()
            self.out.put(("body", bytes(body), True))
            try:
                await fut
            finally:
                self.waiting = None
        else:
            raise ValueError(f"unknown ASGI message type {kind!r} for an http scope")

    def _taken(self):
        fut = self.waiting
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _close_on_loop(self, complete):
        if not complete:
            self.closed = True
            fut = self.waiting
            if fut is not None and not fut.done():
                fut.set_exception(ClientDisconnected("the connection takes no more of this response"))
        if self.gone is not None:
            self.gone.set()

    # -- on pool threads (called by Erlang, one at a time) -------------------------------------

    def first(self):
        """Wait for the status, the headers and the first block (or the end)."""
        while True:
            item = self.out.get()
            kind = item[0]
            if kind == "start":
                self.status, self.headers = item[1], item[2]
            elif kind == "body":
                return (self.status, self.headers) + self._block(item[1], item[2])
            else:
                return self._ended(item[1], before_start=self.status is None)

    def _block(self, data, more):
        """(chunks, more) for a block just taken from the loop."""
        if len(data) > MAX_BLOCK:
            self.pending = (memoryview(data), MAX_BLOCK, more)
            if not more:
                self._complete()  # the rest is in pending; done once it is taken
            return [data[:MAX_BLOCK]], self
        if not more:
            self._complete()
            return ([data] if data else []), None
        return [data], self

    def _ended(self, failed, before_start):
        self._complete()
        if before_start:
            if failed == "aborted":
                # Nobody reads this: the server has answered, or the client is gone.
                body = b"request body aborted\n"
                return (b"400 Bad Request", [(b"Content-Type", b"text/plain"),
                                             (b"Content-Length", b"%d" % len(body))], [body], None)
            if failed is None:
                print("bodypipe: the ASGI app returned without sending a response",
                      file=sys.stderr)
            body = b"Internal Server Error\n"
            return (b"500 Internal Server Error",
                    [(b"Content-Type", b"text/plain"), (b"Content-Length", b"%d" % len(body))],
                    [body], None)
        if failed is None:
            failed = "returned without its last block"
        raise RuntimeError(f"ASGI app {failed} after the response had started")

    def _complete(self):
        self.done = True
        self._forget()
        self.loop.call_soon_threadsafe(self._close_on_loop, True)

    def _forget(self):
        if self.token is not None:
            with _live_lock:
                _live.pop(self.token, None)

    def next(self):
        """The next non-empty block, or ``None`` at the end of the response."""
        if self.done and self.pending is None:
            return None
        if self.pending is not None:
            view, at, more = self.pending
            block = view[at:at + MAX_BLOCK]
            if at + MAX_BLOCK < len(view):
                self.pending = (view, at + MAX_BLOCK, more)
                return bytes(block)
            self.pending = None
            if not more:
                return bytes(block)  # done is set already
            self.loop.call_soon_threadsafe(self._taken)
            return bytes(block)
        # The last block was written: the app's send() may return.
        self.loop.call_soon_threadsafe(self._taken)
        while True:
            item = self.out.get()
            if item[0] == "body":
                chunks, more = self._block(item[1], item[2])
                if not chunks:
                    return None
                return chunks[0]
            if item[0] == "end":
                return self._ended(item[1], before_start=False)

    def close(self):
        """Erlang takes no more of this response (the client is gone, or it needs no body)."""
        if not self.done:
            self.done = True
            self.pending = None
            self._forget()
            self.loop.call_soon_threadsafe(self._close_on_loop, False)


def _scope(req, entry, buf):
    """The http scope of a request described by Erlang (``bodypipe_asgi:scope/3``)."""
    root = req["root_path"].decode("utf-8", "surrogateescape")
    path_info = req["path_info"].decode("utf-8", "surrogateescape")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": req["http_version"].decode("ascii"),
        "method": req["method"].decode("latin-1"),
        "scheme": "http",
        "path": root + path_info,
        "raw_path": req["raw_path"],
        "query_string": req["query_string"],
        "root_path": root,
        "headers": [(n, v) for n, v in req["headers"]],
        "client": (req["client"][0].decode(), req["client"][1]) if req["client"] else None,
        "server": (req["server"][0].decode(), req["server"][1]),
        "state": dict(entry.state),
        "extensions": {"bodypipe.progress": Progress(buf)},
    }


def run(name, req, buf):
    """Start app ``name`` on the request ``req`` whose body is ``buf``; see the module docs."""
    entry = _apps[_text(name)]
    lp = loop()
    call = Call(entry.app, _scope(req, entry, buf), buf, lp)
    early = None
    token = req.get("bodypipe.token")
    if token is not None:
        call.token = token
        with _live_lock:
            early = _early.pop(token, None)
            if early is None:
                _live[token] = call
    lp.call_soon_threadsafe(call._start)
    if early is not None:
        lp.call_soon_threadsafe(early, call)
    return call.first()


def _signal(token, action):
    """Runs ``action`` (a loop-side method of :class:`Call`) on the loop for the call with
    ``token``, or keeps it for the call's run() if Erlang's signal overtook it; True if the call
    was running."""
    with _live_lock:
        # The call stays registered: a client gone first may still be cancelled by the timeout.
        call = _live.get(token)
        if call is None:
            # A cancel includes what a disconnect does: it is never downgraded.
            if _early.get(token) is not Call._cancel:
                _early[token] = action
            while len(_early) > EARLY_MAX:
                _early.popitem(last=False)
            return False
    call.loop.call_soon_threadsafe(action, call)
    return True


def disconnect(token):
    """The client of the call with ``token`` went away: its ``receive()`` yields
    ``http.disconnect`` and a ``send()`` that announces more raises :class:`ClientDisconnected`.
    True if the call was running."""
    return _signal(token, Call._disconnect)


def cancel(token):
    """The call with ``token`` ran past the server's ``app_timeout``: its task is cancelled
    (``asyncio.CancelledError`` at its current ``await``). True if the call was running."""
    return _signal(token, Call._cancel)
