"""WSGI apps for bodypipe_http_SUITE's PEP 3333 corner cases (mounted at /t)."""

import sys
import threading

_lock = threading.Lock()
CLOSED = {"count": 0, "blocks": 0}


def closed():
    with _lock:
        return dict(CLOSED)


class Tracked:
    """An iterable with close(), counting the calls (PEP 3333: the server must call it)."""

    def __init__(self, blocks):
        self.blocks = blocks

    def __iter__(self):
        for block in self.blocks:
            with _lock:
                CLOSED["blocks"] += 1
            yield block

    def close(self):
        with _lock:
            CLOSED["count"] += 1


def _endless():
    for i in range(200000):  # bounded
        yield b"%08d" % i + b"x" * 8184


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/raise":
        raise RuntimeError("boom before start_response")
    if path == "/exc_info":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("changed my mind")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")],
                           sys.exc_info())
        return [b"replaced\n"]
    if path == "/exc_info_late":
        def gen():
            yield b"first block\n"
            try:
                raise ValueError("too late")
            except ValueError:
                start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())
            yield b"never\n"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()
    if path == "/late_error":
        def gen():
            yield b"partial\n"
            raise RuntimeError("boom after the headers")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"hello ")
        return Tracked([b"", b"world", b"\n"])
    if path == "/empty_first":
        start_response("201 Created", [("Content-Type", "text/plain"), ("X-Thing", "1")])
        return Tracked([b"", b"", b"after empties\n"])
    if path == "/length":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "12")])
        return Tracked([b"hello", b" ", b"world!"])
    if path == "/endless":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Tracked(_endless())
    if path == "/ignore_body":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"did not read the body\n"]
    if path == "/no_start":
        return [b"no start_response"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"unknown\n"]
