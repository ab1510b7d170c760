"""Apps for bodypipe_http_watch_SUITE: requests whose app is still running after the body.

WSGI ``application``:
  /hold?name=N[&blocks=K]  read the body, wait until release(N), answer K (default 1) blocks of
                           64 KiB ("h" bytes), then record ("answered", N)
  /path                    answer the request's path and query (for pipelining)
ASGI ``asgi_app``:
  /wait?name=N             receive() to the body's end, record ("body", N, size), then await
                           receive() once more and record ("after", N, message type); answer
                           only if that was no http.disconnect
  /hold?name=N             receive() to the body's end, wait until release(N), answer
"""

import asyncio
import threading

_lock = threading.Lock()
_events = {}
_log = []


def _event(name):
    with _lock:
        return _events.setdefault(name, threading.Event())


def release(name):
    _event(name if isinstance(name, str) else name.decode()).set()


def reset():
    """Lets every waiting app go (none is left behind for the next case), forgets them."""
    with _lock:
        for ev in _events.values():
            ev.set()
        _events.clear()
        _log.clear()


def log():
    with _lock:
        return list(_log)


def _record(*entry):
    with _lock:
        _log.append(tuple(entry))


def _qs(query, key, default):
    for part in query.split("&"):
        k, _, v = part.partition("=")
        if k == key:
            return v
    return default


def application(environ, start_response):
    path, query = environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", "")
    if path == "/hold":
        name = _qs(query, "name", "x")
        size = len(environ["wsgi.input"].read())
        _record("read", name, size)
        _event(name).wait()
        blocks = int(_qs(query, "blocks", "1"))
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(blocks * 65536))])
        _record("answered", name)
        return [b"h" * 65536 for _ in range(blocks)]
    body = f"{path}?{query}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def _body(receive):
    size = 0
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            return size, msg["type"]
        size += len(msg.get("body", b""))
        if not msg.get("more_body", False):
            return size, None


async def _answer(send, text):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", b"%d" % len(text))]})
    await send({"type": "http.response.body", "body": text})


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    name = _qs(scope["query_string"].decode(), "name", "x")
    size, ended = await _body(receive)
    _record("body", name, size)
    path = scope["path"][len(scope["root_path"]):]
    if path == "/wait":
        msg = await receive()
        _record("after", name, msg["type"])
        if msg["type"] == "http.disconnect":
            return
        await _answer(send, b"not disconnected\n")
    elif path == "/hold":
        await asyncio.get_running_loop().run_in_executor(None, _event(name).wait)
        await _answer(send, b"held %d\n" % size)
        _record("answered", name)
