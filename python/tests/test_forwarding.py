"""A body forwarded upstream by real HTTP clients arrives whole (issue 13).

The upstream is a real HTTP/1.1 server (werkzeug's, threaded), not a mock: it de-chunks a chunked
body itself and reports what it received. Each body is fed by a writer thread while the client
sends it. A client sizes a file-like body with ``len()``, ``tell()`` and ``seek(0, SEEK_END)``:
with a declared length it must send exactly that ``Content-Length``; with none it must fall back
to chunked transfer, and in both cases every byte must arrive.
"""

import hashlib
import http.client
import json
import os
import shutil
import threading
import time
import urllib.request

import httpx
import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

import bodypipe

SIZE = 1024 * 1024 + 123  # spans several segments and ring windows, not a multiple of a chunk
assert SIZE > 256 * 1024 + 64 * 1024  # more than a ring window before the last chunk
CHUNK = 64 * 1024


def upstream_app(environ, start_response):
    req = Request(environ)
    data = req.get_data(cache=False)
    seen = {
        "length": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "content_length": req.headers.get("Content-Length"),
        "transfer_encoding": req.headers.get("Transfer-Encoding"),
    }
    return Response(json.dumps(seen), content_type="application/json")(environ, start_response)


@pytest.fixture(scope="module")
def upstream():
    server = make_server("127.0.0.1", 0, upstream_app, threaded=True)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    t.join()


def fed_body(known: bool, ring: bool):
    """A body of SIZE random bytes fed by a writer thread; returns (buf, expected sha256, thread)."""
    payload = os.urandom(SIZE)
    kwargs = {}
    if known:
        kwargs["content_length"] = SIZE
    if ring:
        kwargs["max_buffered"] = 256 * 1024
    w, buf = bodypipe.pipe(**kwargs)

    def feed():
        last = SIZE - CHUNK
        for i in range(0, last, CHUNK):
            w.write(payload[i : min(i + CHUNK, last)])
        # The last chunk and the end only once the client has started sending (and so has sized
        # the body): a body of unknown length must still be of unknown length when it is sized.
        deadline = time.monotonic() + 60
        while buf.tell() == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        w.write(payload[last:])
        w.close()

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    return buf, hashlib.sha256(payload).hexdigest(), t


def check(seen, digest, known):
    assert seen["length"] == SIZE
    assert seen["sha256"] == digest
    if known:
        assert seen["content_length"] == str(SIZE)
        assert seen["transfer_encoding"] is None
    else:
        assert seen["content_length"] is None
        assert seen["transfer_encoding"] == "chunked"


MODES = [
    pytest.param(True, False, id="known-unbounded"),
    pytest.param(True, True, id="known-ring"),
    pytest.param(False, False, id="unknown-unbounded"),
    pytest.param(False, True, id="unknown-ring"),
]


CLIENTS = {
    # The clients a WSGI app would forward `environ["wsgi.input"]` with, as their docs show.
    "requests": lambda url, body: requests.post(url, data=body, timeout=60),
    "httpx": lambda url, body: httpx.post(url, content=body, timeout=60),
}


@pytest.mark.parametrize("client", sorted(CLIENTS))
@pytest.mark.parametrize("known,ring", MODES)
def test_client_forwards_the_whole_body(upstream, client, known, ring):
    buf, digest, t = fed_body(known, ring)
    r = CLIENTS[client](upstream, buf)
    t.join()
    assert r.status_code == 200
    check(r.json(), digest, known)


@pytest.mark.parametrize("known,ring", MODES)
def test_urllib_forwards_the_whole_body(upstream, known, ring):
    buf, digest, t = fed_body(known, ring)
    req = urllib.request.Request(upstream, data=buf, method="POST")
    if known:
        # urllib sizes only bytes-like data; a file of known length is given its header.
        req.add_header("Content-Length", str(SIZE))
    with urllib.request.urlopen(req, timeout=60) as resp:
        seen = json.load(resp)
    t.join()
    check(seen, digest, known)


@pytest.mark.parametrize("known,ring", MODES)
def test_copyfileobj_copies_the_whole_body(tmp_path, known, ring):
    buf, digest, t = fed_body(known, ring)
    out = tmp_path / "body"
    with open(out, "wb") as f:
        shutil.copyfileobj(buf, f)
    t.join()
    assert hashlib.sha256(out.read_bytes()).hexdigest() == digest


def test_seek_end_of_a_known_length_measures_without_consuming():
    """The clients' sizing dance before the bytes are here: nothing is consumed, nothing lost."""
    w, buf = bodypipe.pipe(content_length=10, max_buffered=4)
    w.write(b"abcd")
    assert buf.read(1) == b"a"
    here = buf.tell()
    assert buf.seek(0, os.SEEK_END) == 10
    assert buf.tell() == 10
    # At the end a read sees EOF, as in a file, and waits for nothing.
    assert buf.read() == b""
    assert buf.read(3) == b""
    assert buf.readline() == b""
    assert buf.readable_amount() == 0
    assert buf.seek(0, os.SEEK_CUR) == 10
    assert buf.seek(here) == 1
    assert buf.read(3) == b"bcd"
    w.write(b"efghij")
    w.close()
    assert buf.read() == b"efghij"


def test_written_count_ignores_the_readers_seeks():
    """``_written()`` (what upload progress reports) is the writer's count, not the read
    position: a virtual ``seek(0, SEEK_END)`` or a seek back changes ``tell()`` only."""
    w, buf = bodypipe.pipe(content_length=10)
    w.write(b"abcd")
    assert buf._written() == 4
    assert buf.seek(0, os.SEEK_END) == 10
    assert buf._written() == 4
    assert buf.seek(1) == 1 and buf.read(2) == b"bc"
    assert buf._written() == 4
    w.write(b"efghij")
    w.close()
    assert buf._written() == 10


def test_seek_end_of_an_unknown_length_is_unsupported_until_it_ends():
    w, buf = bodypipe.pipe()
    w.write(b"abc")
    with pytest.raises(OSError) as exc:  # io.UnsupportedOperation: clients then stream it
        buf.seek(0, os.SEEK_END)
    assert isinstance(exc.value, __import__("io").UnsupportedOperation)
    assert buf.tell() == 0 and buf.read(3) == b"abc"
    w.close()
    assert buf.seek(0, os.SEEK_END) == 3  # ended: the length is known now


def test_len_is_not_the_buffered_amount():
    """``len()`` used to be the bytes buffered now, which clients took as the body's length and
    truncated it. A file has no ``len()``; the amount available now is ``readable_amount()``."""
    w, buf = bodypipe.pipe(content_length=100)
    w.write(b"x" * 10)
    with pytest.raises(TypeError):
        len(buf)
    assert buf.readable_amount() == 10
    assert bool(buf)


def test_http_client_sends_a_known_length_body_whole(upstream):
    """http.client with an explicit Content-Length reads the file to the end."""
    buf, digest, t = fed_body(True, True)
    host, port = upstream.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", "/", body=buf, headers={"Content-Length": str(SIZE)})
    seen = json.loads(conn.getresponse().read())
    conn.close()
    t.join()
    check(seen, digest, True)
