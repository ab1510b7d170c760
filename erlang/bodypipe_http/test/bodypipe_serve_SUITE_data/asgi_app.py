"""The ASGI app of bodypipe_serve_SUITE (`bin/bodypipe serve asgi_app --asgi`): Starlette.

/upload        streams the request body (request.stream()), answers "size sha256 started"
               (started: what the lifespan startup put in the state)
/pid           the worker's process id
The lifespan shutdown appends "shutdown PID" to the file named by $BODYPIPE_TEST_LIFESPAN, so
the test sees that a graceful stop ran it.
"""

import contextlib
import hashlib
import os

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def upload(request):
    h = hashlib.sha256()
    size = 0
    async for block in request.stream():
        size += len(block)
        h.update(block)
    return PlainTextResponse(f"{size} {h.hexdigest()} {request.state.started}")


async def pid(request):
    return PlainTextResponse(str(os.getpid()))


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"started": "yes"}
    path = os.environ.get("BODYPIPE_TEST_LIFESPAN")
    if path:
        with open(path, "a") as f:
            f.write(f"shutdown {os.getpid()}\n")


app = Starlette(routes=[Route("/upload", upload, methods=["POST"]), Route("/pid", pid)],
                lifespan=lifespan)
