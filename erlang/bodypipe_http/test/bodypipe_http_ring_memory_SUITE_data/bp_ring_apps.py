"""WSGI app for bodypipe_http_ring_memory_SUITE: a stalled application.

  /hold   reads nothing until release() is called (so the request's ring fills up and the
          connection blocks on it), then reads the body (to its end or its abort) and answers.
"""

import threading

try:
    from bodypipe import BodyAborted
except ImportError:  # pragma: no cover - not in bodypipe's VM
    BodyAborted = ConnectionAbortedError

_release = threading.Event()


def release():
    _release.set()


def rearm():
    _release.clear()


def application(environ, start_response):
    _release.wait()
    try:
        n = len(environ["wsgi.input"].read())
    except BodyAborted:
        n = -1
    body = f"read {n}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
