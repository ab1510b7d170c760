"""A typed user program: a `PyBuffer` wherever Python code expects a binary file.

Checked by `mypy --strict` and `pyright` (scripts/typecheck.sh, part of `make test`), and run by
the test suite (python/tests/test_typing_program.py), so it must both type-check and work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import io
import json
import shutil
from collections.abc import Callable, Iterable
from typing import IO, BinaryIO
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import bodypipe

if TYPE_CHECKING:
    from _typeshed import OptExcInfo


def count_bytes(stream: IO[bytes]) -> int:
    """Any function written against `IO[bytes]`."""
    total = 0
    while chunk := stream.read(8192):
        total += len(chunk)
    return total


def first_line(stream: BinaryIO) -> bytes:
    return stream.readline()


def as_raw(stream: io.RawIOBase) -> io.RawIOBase:
    return stream


def body(data: bytes) -> bodypipe.PyBuffer:
    writer, reader = bodypipe.pipe(len(data))
    writer.write(data)
    writer.close()
    return reader


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """A WSGI app typed with `wsgiref.types`, reading `wsgi.input` as the file it is."""
    stream: IO[bytes] = environ["wsgi.input"]
    length = count_bytes(stream)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(length).encode()]


typed_app: WSGIApplication = app


def run() -> dict[str, object]:
    """Every consumer the README names, on real bodies; returns what each produced."""
    out: dict[str, object] = {}
    out["buffered"] = io.BufferedReader(body(b"abc\ndef\n")).read()
    text = io.TextIOWrapper(io.BufferedReader(body("héllo\nwörld\n".encode())), encoding="utf-8")
    out["text"] = text.readlines()
    out["json"] = json.load(body(b'{"a": [1, 2, 3]}'))
    sink = io.BytesIO()
    shutil.copyfileobj(body(b"x" * 100_000), sink)
    out["copied"] = len(sink.getvalue())
    out["io_bytes"] = count_bytes(body(b"12345"))
    out["binary_io"] = first_line(body(b"first\nsecond\n"))
    out["raw"] = as_raw(body(b"")).readable()
    statuses: list[str] = []

    def start_response(
        status: str,
        headers: list[tuple[str, str]],
        exc_info: OptExcInfo | None = None,
        /,
    ) -> Callable[[bytes], object]:
        statuses.append(status)
        return lambda data: None

    env: WSGIEnvironment = {"wsgi.input": body(b"q" * 10)}
    out["wsgi"] = (b"".join(typed_app(env, start_response)), statuses)
    return out


if __name__ == "__main__":
    print(run())
