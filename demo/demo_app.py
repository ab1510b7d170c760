"""bodypipe's example WSGI application (plain WSGI, no framework).

Endpoints (all bodies are read while they arrive, never buffered whole):

- ``POST /upload``: hashes the body with a ``readinto`` loop; returns ``{"size", "sha256"}``.
  ``?delay_ms=N`` sleeps N ms after each 64 KiB read (a slow application).
- ``POST /echo``: line echo; the response iterable iterates over ``wsgi.input`` line by line.
- ``POST /form``: ``multipart/form-data``, parsed as a stream; returns the text fields and,
  per file, its name, size and sha256.
- ``GET /stats``: uploads in progress, the peak, and the bodies seen aborted.
- ``/environ``: the environ as JSON (non-JSON values by type name) and up to 1 MiB of body.
- ``GET /``: a short help text.

Runs unchanged under any WSGI server (``gunicorn --chdir demo demo_app:application``).
"""

import hashlib
import json
import threading
import time
from email.message import Message
from urllib.parse import parse_qs

try:  # inside bodypipe's VM this is the NIF's built-in module; elsewhere the wheel, if any
    from bodypipe import BodyAborted
except ImportError:  # pragma: no cover - another server, no bodypipe installed
    BodyAborted = ConnectionAbortedError

CHUNK = 64 * 1024

_lock = threading.Lock()
STATS = {"active": 0, "peak": 0, "completed": 0, "aborted": 0, "last_abort": None}


def _track(delta):
    with _lock:
        STATS["active"] += delta
        STATS["peak"] = max(STATS["peak"], STATS["active"])


def stats():
    with _lock:
        return dict(STATS)


def reset_stats():
    with _lock:
        active = STATS["active"]
        STATS.update(active=active, peak=active, completed=0, aborted=0, last_abort=None)


def _json(start_response, obj, status="200 OK"):
    body = (json.dumps(obj, sort_keys=True) + "\n").encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def _aborted(start_response, exc):
    with _lock:
        STATS["aborted"] += 1
        STATS["last_abort"] = f"{type(exc).__name__}: {exc}"
    return _json(start_response, {"error": "body aborted", "reason": str(exc)},
                 "400 Bad Request")


def upload(environ, start_response):
    inp = environ["wsgi.input"]
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    delay = float(qs.get("delay_ms", ["0"])[0]) / 1000.0
    digest = hashlib.sha256()
    size = 0
    _track(+1)
    try:
        readinto = getattr(inp, "readinto", None)
        if readinto is not None:
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            while True:
                n = readinto(buf)
                if not n:
                    break
                digest.update(view[:n])
                size += n
                if delay:
                    time.sleep(delay)
        else:  # wsgiref.validate's wrapper only offers read(n), readline, iteration
            while True:
                data = inp.read(CHUNK)
                if not data:
                    break
                digest.update(data)
                size += len(data)
                if delay:
                    time.sleep(delay)
    except BodyAborted as exc:
        return _aborted(start_response, exc)
    finally:
        _track(-1)
    with _lock:
        STATS["completed"] += 1
    return _json(start_response, {"size": size, "sha256": digest.hexdigest()})


def echo(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return _echo_lines(environ["wsgi.input"])


def _echo_lines(inp):
    # A generator: each line goes out as soon as it has arrived (full duplex).
    for line in inp:
        yield line


def _param(value, name):
    msg = Message()
    msg["content-type"] = value
    return msg.get_param(name)


def _disposition(value):
    msg = Message()
    msg["content-disposition"] = value
    return msg.get_param("name", header="content-disposition"), msg.get_filename()


def parse_multipart(read, boundary, on_part):
    """Streaming multipart/form-data parser: calls ``on_part(headers)`` per part, which returns
    a sink called with the part's data in pieces. Holds at most one read plus a marker."""
    marker = b"\r\n--" + boundary
    buf = bytearray(b"\r\n")  # so the first delimiter matches the marker too
    eof = False
    sink = None

    def fill():
        nonlocal eof
        data = read(CHUNK)
        if not data:
            eof = True
        buf.extend(data)

    while True:
        i = buf.find(marker)
        if i < 0:
            if eof:
                raise ValueError("truncated multipart body")
            keep = len(marker) - 1
            if len(buf) > keep:
                if sink is not None:
                    sink(bytes(buf[:-keep]))
                del buf[:-keep]
            fill()
            continue
        if sink is not None:
            sink(bytes(buf[:i]))
        del buf[: i + len(marker)]
        while len(buf) < 2 and not eof:
            fill()
        if buf[:2] == b"--":
            return
        while True:
            j = buf.find(b"\r\n\r\n")
            if j >= 0:
                break
            if eof or len(buf) > CHUNK:
                raise ValueError("bad part headers")
            fill()
        lines = bytes(buf[:j]).split(b"\r\n")[1:]  # [0]: the rest of the delimiter line
        del buf[: j + 4]
        headers = {}
        for line in lines:
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        sink = on_part(headers)


def form(environ, start_response):
    boundary = _param(environ.get("CONTENT_TYPE", ""), "boundary")
    if not environ.get("CONTENT_TYPE", "").startswith("multipart/form-data") or not boundary:
        return _json(start_response, {"error": "expected multipart/form-data"}, "400 Bad Request")
    fields, files = {}, {}

    def on_part(headers):
        name, filename = _disposition(headers.get("content-disposition", ""))
        if filename is None:
            parts = []
            fields[name] = parts
            return parts.append
        digest = hashlib.sha256()
        entry = files[name] = {"filename": filename, "size": 0,
                               "content_type": headers.get("content-type")}

        def sink(data):
            digest.update(data)
            entry["size"] += len(data)
            entry["sha256"] = digest.hexdigest()

        entry["sha256"] = digest.hexdigest()
        return sink

    try:
        parse_multipart(environ["wsgi.input"].read, boundary.encode("latin-1"), on_part)
    except BodyAborted as exc:
        return _aborted(start_response, exc)
    except ValueError as exc:
        return _json(start_response, {"error": str(exc)}, "400 Bad Request")
    out_fields = {k: b"".join(v).decode("utf-8", "replace") for k, v in fields.items()}
    return _json(start_response, {"fields": out_fields, "files": files})


HELP = b"""bodypipe demo: request bodies stream from Erlang (bodypipe_http) into this WSGI app.
  POST /upload[?delay_ms=N]  -> size and sha256 of the body (readinto loop)
  POST /echo                 -> the body's lines, echoed as they arrive
  POST /form                 -> multipart/form-data: fields, and size + sha256 per file
  GET  /stats                -> uploads in progress, aborted bodies
  GET  /environ              -> the WSGI environ (and up to 1 MiB of body)
  /flask/...                 -> the same ideas as a Flask app, served unchanged
"""


def application(environ, start_response):
    path = environ.get("PATH_INFO", "") or "/"
    method = environ["REQUEST_METHOD"]
    if path == "/upload" and method in ("POST", "PUT"):
        return upload(environ, start_response)
    if path == "/echo" and method in ("POST", "PUT"):
        return echo(environ, start_response)
    if path == "/form" and method == "POST":
        return form(environ, start_response)
    if path == "/stats":
        return _json(start_response, stats())
    if path.startswith("/environ"):
        env = {k: (v if isinstance(v, (str, bool, int)) else type(v).__name__)
               for k, v in environ.items()}
        env["wsgi.version"] = list(environ["wsgi.version"])
        env["body"] = environ["wsgi.input"].read(1 << 20).decode("latin-1")
        return _json(start_response, env)
    if path == "/" and method in ("GET", "HEAD"):
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(HELP)))])
        return [HELP]
    return _json(start_response, {"error": "not found", "path": path}, "404 Not Found")
