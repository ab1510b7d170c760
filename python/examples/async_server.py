"""An ASGI-style asyncio server that streams request bodies through bodypipe.

A plain ``asyncio.start_server`` server: for each request it parses the head, creates a
ring-mode ``bodypipe.pipe(content_length=..., max_buffered=MAX_BUFFERED)``, and runs two things at
once on the event loop:

* a *pump* that reads the body from the socket as it arrives and feeds it to the pipe's
  ``Writer`` with ``await writer.awrite(chunk)``: when the application falls behind and the ring
  holds ``MAX_BUFFERED`` unread bytes, ``awrite`` parks the pump (never the loop) until the
  application has read half of them, and the pump stops reading the socket meanwhile, so TCP
  backpressure reaches the client and a slow application never makes the server hold more than
  about ``MAX_BUFFERED`` (plus one chunk) of a body, whatever its size;
* the *application*, an async handler that consumes the body with the async API
  (``await body.aread(n)``, ``async for line in body``, ...) while it is still arriving.

The demo application answers with the body's size and SHA-256 (``/lines`` counts lines instead).
A client that disconnects mid-body aborts the pipe, and the handler sees ``bodypipe.BodyAborted``.

Run it and post to it::

    python python/examples/async_server.py --port 8000 [--uvloop]
    curl --data-binary @some-file http://127.0.0.1:8000/
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json

import bodypipe

MAX_HEAD = 64 * 1024
# The largest body accepted; a larger Content-Length is answered 413 before any of it is read.
MAX_BODY = 64 * 1024 * 1024
# The ring's high-water mark: what one request may hold in memory while its application lags.
MAX_BUFFERED = 1024 * 1024


async def app(scope: dict, body: bodypipe.PyBuffer) -> tuple[int, dict]:
    """The application: consumes the streaming body with the async API."""
    if scope["path"] == "/lines":
        lines = 0
        async for _line in body:
            lines += 1
        return 200, {"lines": lines}
    digest = hashlib.sha256()
    size = 0
    while chunk := await body.aread(256 * 1024):
        digest.update(chunk)
        size += len(chunk)
    return 200, {"size": size, "sha256": digest.hexdigest()}


async def pump(reader: asyncio.StreamReader, writer: bodypipe.Writer, length: int) -> None:
    """Feeds `length` body bytes from the socket into the pipe as they arrive."""
    remaining = length
    try:
        while remaining:
            chunk = await reader.read(min(remaining, 256 * 1024))
            if not chunk:
                writer.abort("client disconnected")
                return
            # Waits (without blocking the loop) while the ring is full; reaching the content
            # length ends the body (EOF).
            await writer.awrite(chunk)
            remaining -= len(chunk)
    except BrokenPipeError:
        pass  # the application closed the body early: drop the rest
    except BaseException as exc:
        writer.abort(f"receiving the body failed: {exc!r}")
        raise


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, path, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return method, path, headers


async def respond(stream: asyncio.StreamWriter, status: int, payload: dict) -> None:
    data = json.dumps(payload).encode()
    reason = {
        200: "OK",
        400: "Bad Request",
        411: "Length Required",
        413: "Content Too Large",
        500: "Internal Server Error",
    }[status]
    stream.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data
    )
    await stream.drain()


async def handle(reader: asyncio.StreamReader, stream: asyncio.StreamWriter, max_body: int = MAX_BODY) -> None:
    try:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, path, headers = parse_head(head[:-4])
            length = int(headers.get("content-length", "0"))
            if length < 0:
                raise ValueError("negative Content-Length")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            await respond(stream, 400, {"error": "bad request"})
            return
        if "chunked" in headers.get("transfer-encoding", "").lower():
            await respond(stream, 411, {"error": "send a Content-Length"})
            return
        if length > max_body:
            # Refused before a byte of it is read (and before a 100 Continue invites it); the
            # connection closes, so the unread body cannot be taken for the next request.
            await respond(stream, 413, {"error": f"body larger than {max_body} bytes"})
            return
        if headers.get("expect", "").lower() == "100-continue":
            stream.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        w, body = bodypipe.pipe(content_length=length, max_size=max_body, max_buffered=MAX_BUFFERED)
        feeding = asyncio.create_task(pump(reader, w, length))
        scope = {"type": "http", "method": method, "path": path, "headers": headers}
        try:
            status, payload = await app(scope, body)
        except bodypipe.BodyAborted as exc:
            feeding.cancel()
            print(f"request body aborted: {exc.reason}")
            return
        except Exception as exc:  # an application error is a 500, as an ASGI server would
            status, payload = 500, {"error": repr(exc)}
        # The application is done. If it did not read the whole body, stop receiving it.
        body.close()
        feeding.cancel()
        await asyncio.gather(feeding, return_exceptions=True)
        await respond(stream, status, payload)
    finally:
        stream.close()


async def serve(host: str = "127.0.0.1", port: int = 0, max_body: int = MAX_BODY) -> asyncio.Server:
    """Starts the server (port 0: any free port; see ``server.sockets[0].getsockname()``)."""
    return await asyncio.start_server(lambda r, w: handle(r, w, max_body), host, port, limit=MAX_HEAD)


async def main(host: str, port: int, max_body: int) -> None:
    server = await serve(host, port, max_body)
    print(f"listening on http://{host}:{server.sockets[0].getsockname()[1]}/")
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.add_argument("--max-body", type=int, default=MAX_BODY, help="largest body accepted (413 above)")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(main(args.host, args.port, args.max_body))
    else:
        asyncio.run(main(args.host, args.port, args.max_body))
