"""WSGI apps for bodypipe_http_framing_SUITE: each request is recorded (what the app saw),
so a test can assert both the status the client got and what reached the application.

Paths (PATH_INFO under any mount):
  /read[/...]      read the whole body with read(); answer its size
  /read_slow?ms=N  read 1 byte, sleep N ms, read the rest
  /echo            stream the body back line by line as it arrives (chunked response)
  /ignore          answer without reading the body
  /sleep?ms=N      sleep N ms, then answer (without reading the body)
  /bad_header?kind=K   start_response with a bad header (K: crlf, name, nul, status, cl)
  /length?declared=N&sent=M   declare Content-Length N, send M bytes in two blocks
  /close_raises    a list response whose close() raises
  /big?size=N      one bytes block of N bytes
Every recorded entry: method, script_name, path_info, query, uri, content_length, headers (the
HTTP_* and CONTENT_* keys), body (bytes read), error (the exception the app caught, as text).
"""

import threading
import time
from urllib.parse import parse_qs

try:
    from bodypipe import BodyAborted
except ImportError:  # pragma: no cover - not in bodypipe's VM
    BodyAborted = ConnectionAbortedError

_lock = threading.Lock()
_records = []
_events = {}


def records():
    with _lock:
        return list(_records)


def reset():
    with _lock:
        _records.clear()


def _record(environ, body=b"", error=None):
    entry = {
        "method": environ["REQUEST_METHOD"],
        "script_name": environ.get("SCRIPT_NAME", ""),
        "path_info": environ.get("PATH_INFO", ""),
        "query": environ.get("QUERY_STRING", ""),
        "uri": environ.get("REQUEST_URI", ""),
        "protocol": environ.get("SERVER_PROTOCOL", ""),
        "headers": {k: v for k, v in environ.items()
                    if k.startswith("HTTP_") or k in ("CONTENT_TYPE", "CONTENT_LENGTH")},
        "body": body,
        "error": error,
    }
    with _lock:
        _records.append(entry)
    return entry


def _qs(environ, key, default):
    return int(parse_qs(environ.get("QUERY_STRING", "")).get(key, [default])[0])


def _answer(start_response, text, status="200 OK"):
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _read_all(environ):
    try:
        return environ["wsgi.input"].read(), None
    except BodyAborted as exc:
        return b"", f"{type(exc).__name__}: {exc}"


class _CloseRaises:
    def __init__(self, blocks):
        self.blocks = blocks

    def __iter__(self):
        return iter(self.blocks)

    def close(self):
        raise RuntimeError("close() failed on purpose")


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/read" or path.startswith("/read/"):
        body, error = _read_all(environ)
        _record(environ, body, error)
        return _answer(start_response, f"read {len(body)}\n")
    if path == "/read_slow":
        inp = environ["wsgi.input"]
        try:
            first = inp.read(1)
            time.sleep(_qs(environ, "ms", 100) / 1000)
            body, error = first + inp.read(), None
        except BodyAborted as exc:
            body, error = b"", f"{type(exc).__name__}: {exc}"
        _record(environ, body, error)
        return _answer(start_response, f"read {len(body)}\n")
    if path == "/echo":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _echo(environ)
    if path == "/ignore":
        _record(environ)
        return _answer(start_response, "ignored the body\n")
    if path == "/sleep":
        time.sleep(_qs(environ, "ms", 100) / 1000)
        _record(environ)
        return _answer(start_response, "slept\n")
    if path == "/bad_header":
        kind = parse_qs(environ.get("QUERY_STRING", "")).get("kind", ["crlf"])[0]
        bad = {"crlf": ("200 OK", [("X-Ok", "1"), ("X-Inject", "a\r\nSet-Cookie: x=1")]),
               "lf": ("200 OK", [("X-Inject", "a\nSet-Cookie: x=1")]),
               "name": ("200 OK", [("X Bad", "1")]),
               "colon": ("200 OK", [("X-Bad:", "1")]),
               "nul": ("200 OK", [("X-Nul", "a\x00b")]),
               "status": ("200 OK\r\nSet-Cookie: x=1", []),
               "cl": ("200 OK", [("Content-Length", "12, 13")])}[kind]
        try:
            start_response(*bad)
        except ValueError as exc:
            _record(environ, error=f"ValueError: {exc}")
            raise
        _record(environ, error="accepted")
        return [b"should not be sent\n"]
    if path == "/length":
        declared, sent = _qs(environ, "declared", 10), _qs(environ, "sent", 10)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(declared))])
        data = b"x" * sent
        half = sent // 2
        return iter([data[:half], data[half:]])
    if path == "/close_raises":
        _record(environ)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return _CloseRaises([b"he", b"llo"])
    if path == "/big":
        size = _qs(environ, "size", 1 << 20)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [bytes(i % 251 for i in range(251)) * (size // 251) + b"z" * (size % 251)]
    _record(environ)
    return _answer(start_response, f"unknown {path}\n", "404 Not Found")


def _echo(environ):
    inp = environ["wsgi.input"]
    got = []
    try:
        for line in inp:
            got.append(line)
            yield line
        _record(environ, b"".join(got))
    except BodyAborted as exc:
        _record(environ, b"".join(got), f"{type(exc).__name__}: {exc}")
        raise
