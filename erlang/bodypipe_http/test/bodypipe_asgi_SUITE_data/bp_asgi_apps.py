"""ASGI apps for bodypipe_asgi_SUITE: Starlette (``starlette_app``), FastAPI (``fastapi_app``)
and a plain ASGI 3 callable (``raw_app``), each reading request bodies the way real apps do
(``request.stream()``, ``request.form()`` with python-multipart, ``UploadFile``) and recording
what they saw for the suite to check (``log()``)."""

import asyncio
import contextlib
import hashlib
import threading

from fastapi import FastAPI, File, Form, Request as FastRequest, UploadFile
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

_lock = threading.Lock()
_log = []


def log():
    """What the apps recorded: lifespan steps and request outcomes, in order."""
    with _lock:
        return list(_log)


def reset():
    with _lock:
        _log.clear()


def _record(*item):
    with _lock:
        _log.append(item)


def _digest(data):
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@contextlib.asynccontextmanager
async def _lifespan(app):
    _record("startup", app.__class__.__name__)
    yield {"started": True}
    _record("shutdown", app.__class__.__name__)


# --- Starlette -------------------------------------------------------------------------------

async def upload(request):
    h = hashlib.sha256()
    size = 0
    async for chunk in request.stream():
        h.update(chunk)
        size += len(chunk)
    return JSONResponse({"size": size, "sha256": h.hexdigest(),
                         "transfer_encoding": request.headers.get("transfer-encoding"),
                         "content_length": request.headers.get("content-length")})


async def form(request):
    async with request.form(max_part_size=64 << 20) as f:
        out = {}
        for key, value in f.multi_items():
            if isinstance(value, str):
                out[key] = value
            else:
                out[key] = dict(_digest(await value.read()), filename=value.filename)
    return JSONResponse(out)


async def state(request):
    return JSONResponse({"started": request.state.started, "path": request.url.path,
                         "root_path": request.scope["root_path"],
                         "query": request.scope["query_string"].decode()})


async def stream(request):
    n = int(request.query_params["n"])
    size = int(request.query_params["size"])

    async def gen():
        for i in range(n):
            yield (b"%08d" % i) * (size // 8)

    return StreamingResponse(gen(), media_type="application/octet-stream")


async def loop_info(request):
    """Which loop runs the app, on which thread."""
    import asyncio

    loop = asyncio.get_running_loop()
    return JSONResponse({"module": type(loop).__module__.split(".")[0], "loop_id": id(loop),
                         "thread": threading.current_thread().name})


async def big(request):
    """One response body of `size` bytes in a single send (more than the host's 1 MiB block)."""
    size = int(request.query_params["size"])
    return Response(bytes(range(256)) * (size // 256), media_type="application/octet-stream")


async def slow_reader(request):
    """Records the body's first event, then reads until the stream ends or the client goes."""
    got = 0
    try:
        async for chunk in request.stream():
            got += len(chunk)
            _record("got", got)
    except ClientDisconnect:
        _record("disconnect", got)
        raise
    return JSONResponse({"size": got})


starlette_app = Starlette(
    routes=[Route("/upload", upload, methods=["POST", "PUT"]),
            Route("/form", form, methods=["POST"]),
            Route("/state", state),
            Route("/stream", stream),
            Route("/big", big),
            Route("/loop", loop_info),
            Route("/slow", slow_reader, methods=["POST", "PUT"])],
    lifespan=_lifespan,
)


# --- FastAPI ---------------------------------------------------------------------------------

fastapi_app = FastAPI(lifespan=_lifespan)


@fastapi_app.post("/form")
async def fastapi_form(file: UploadFile = File(...), note: str = Form(...)):
    return dict(_digest(await file.read()), filename=file.filename, note=note)


@fastapi_app.api_route("/upload", methods=["POST", "PUT"])
async def fastapi_upload(request: FastRequest):
    h = hashlib.sha256()
    size = 0
    async for chunk in request.stream():
        h.update(chunk)
        size += len(chunk)
    return {"size": size, "sha256": h.hexdigest()}


# --- plain ASGI ------------------------------------------------------------------------------

async def raw_app(scope, receive, send):
    """Echoes the request body in blocks as they come (a streamed response whose every send
    waits for the connection), then records what receive() gives after the body."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _record("startup", "raw")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                _record("shutdown", "raw")
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/raw/flood":
        await _flood(send, int(scope["query_string"]))
        return
    events = []
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")]})
    while True:
        message = await receive()
        events.append(message["type"])
        if message["type"] == "http.disconnect":
            break
        await send({"type": "http.response.body", "body": message["body"], "more_body": True})
        if not message["more_body"]:
            break
    await send({"type": "http.response.body", "body": b""})
    # The response is complete: receive() now says the exchange is over.
    after = await receive()
    _record("raw", scope["path"], events[-1], after["type"])


async def no_lifespan(scope, receive, send):
    """An app that refuses the lifespan scope (it raises before receiving anything)."""
    assert scope["type"] == "http", "no lifespan here"
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body"})


async def broken(scope, receive, send):
    """Raises before its response starts (a 500, traceback on stderr)."""
    if scope["type"] == "lifespan":
        raise RuntimeError("no lifespan")
    raise ValueError("broken on purpose")


async def failing_startup(scope, receive, send):
    """Answers the lifespan startup with lifespan.startup.failed."""
    assert scope["type"] == "lifespan"
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "database unreachable"})


FLOOD_BLOCK = 1 << 20


async def _flood(send, blocks):
    """Sends `blocks` blocks of 1 MiB as fast as send() lets it, counting the sends done."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"%d" % (blocks * FLOOD_BLOCK))]})
    block = b"f" * FLOOD_BLOCK
    for i in range(blocks):
        await send({"type": "http.response.body", "body": block, "more_body": i < blocks - 1})
        _record("sent", i + 1)


def sent():
    """How many flood blocks send() has returned for."""
    with _lock:
        return max([n for kind, n in _log if kind == "sent"], default=0)


async def stuck_app(scope, receive, send):
    """Never finishes on its own, for the server's app_timeout to cancel: /sleep awaits a sleep
    before responding, /started after its response has started, /spin yields in a busy loop of
    awaits. Records ("cancelled", path, exception name) from its finally block."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    outcome = "returned"
    try:
        if path == "/stuck/started":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        if path == "/stuck/spin":
            while True:
                await asyncio.sleep(0)
        await asyncio.sleep(3600)
    except BaseException as e:
        outcome = type(e).__name__
        raise
    finally:
        _record("cancelled", path, outcome)
