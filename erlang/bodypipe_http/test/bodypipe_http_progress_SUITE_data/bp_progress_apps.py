"""Apps for bodypipe_http_progress_SUITE: read the body and answer with the upload progress
they saw (``environ["bodypipe.progress"]``, ``scope["extensions"]["bodypipe.progress"]``)."""

import json


def wsgi_app(environ, start_response):
    progress = environ["bodypipe.progress"]
    inp = environ["wsgi.input"]
    first = None
    size = 0
    while True:
        block = inp.read(65536)
        if not block:
            break
        size += len(block)
        if first is None:
            first = [progress.received, progress.expected]
    body = json.dumps({"size": size, "first": first, "received": progress.received,
                       "expected": progress.expected, "done": progress.done,
                       "fraction": progress.fraction()}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return  # no lifespan
    progress = scope["extensions"]["bodypipe.progress"]
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = json.dumps({"size": size, "received": progress.received,
                       "expected": progress.expected, "done": progress.done}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def seek_end_app(environ, start_response):
    """Reads what the client sent first (``X-First`` bytes), stands at the declared end with
    ``seek(0, 2)`` as a length-measuring library does, and answers with the progress seen there
    without waiting for the rest of the body."""
    progress = environ["bodypipe.progress"]
    inp = environ["wsgi.input"]
    first = int(environ["HTTP_X_FIRST"])
    got = 0
    while got < first:
        block = inp.read(first - got)
        if not block:
            break
        got += len(block)
    end = inp.seek(0, 2)
    at_end = {"tell": inp.tell(), "received": progress.received, "done": progress.done}
    inp.seek(got)
    body = json.dumps({"read": got, "end": end, "at_end": at_end,
                       "after": progress.received}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
