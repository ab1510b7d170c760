"""The WSGI app of bodypipe_serve_SUITE and scripts/gil_latency.py.

/pid            the worker's process id
/spin?n=N&marker=PATH
                writes PATH (so the caller knows the call has started), then holds the GIL in one
                C call, sum(range(N)), which never releases it; answers the worker's pid
/exit           os._exit(1): the whole worker process ends at once
/upload         reads the body with readinto, answers "size sha256 pid"
/env            sys.prefix and whether flask is importable (the venv check)
/length         reads the body, answers "CONTENT_LENGTH size" (CONTENT_LENGTH "-" when absent)
"""

import hashlib
import os
import sys
from urllib.parse import parse_qs


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if path == "/spin":
        n = int(query.get("n", ["1000000000"])[0])
        marker = query.get("marker", [None])[0]
        if marker:
            with open(marker, "w") as f:
                f.write(str(os.getpid()))
        sum(range(n))
        body = b"%d" % os.getpid()
    elif path == "/exit":
        os._exit(1)
    elif path == "/upload":
        h = hashlib.sha256()
        size = 0
        buf = bytearray(1 << 16)
        stream = environ["wsgi.input"]
        while True:
            n = stream.readinto(buf)
            if not n:
                break
            size += n
            h.update(memoryview(buf)[:n])
        body = b"%d %s %d" % (size, h.hexdigest().encode(), os.getpid())
    elif path == "/length":
        size = len(environ["wsgi.input"].read())
        body = f"{environ.get('CONTENT_LENGTH') or '-'} {size}".encode()
    elif path == "/env":
        try:
            import flask  # noqa: F401
            has_flask = "flask"
        except ImportError:
            has_flask = "no-flask"
        body = f"{os.path.realpath(sys.prefix)} {has_flask}".encode()
    else:
        body = b"%d" % os.getpid()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
