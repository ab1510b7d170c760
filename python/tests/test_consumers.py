"""Real consumers, written by others, reading straight from a PyBuffer."""

import email.parser
import hashlib
import io
import json
import random
import tarfile
import threading
import time
import zipfile

import pytest

import bodypipe
from conftest import feed


def chunked(data, rng, max_chunk=5000):
    out = []
    i = 0
    while i < len(data):
        n = rng.randint(1, max_chunk)
        out.append(data[i : i + n])
        i += n
    return out


def test_json_load_streaming():
    doc = {"users": [{"id": i, "name": f"user{i}", "tags": ["a", "b"] * 3} for i in range(2000)]}
    data = json.dumps(doc).encode()
    w, b = bodypipe.pipe()
    t = feed(w, chunked(data, random.Random(1)), delay=0.0002)
    assert json.load(b) == doc
    t.join()


def test_io_buffered_reader():
    data = b"".join(b"line %d of the body\n" % i for i in range(20000))
    w, b = bodypipe.pipe()
    t = feed(w, chunked(data, random.Random(2)), delay=0.0001)
    br = io.BufferedReader(b, buffer_size=4096)
    assert br.readline() == b"line 0 of the body\n"
    assert br.read(5) == b"line "
    rest = br.read()
    assert b"line 0 of the body\nline " + rest == data
    t.join()


def test_io_text_wrapper_over_buffered_reader():
    text = "héllo wörld\n" * 1000
    w, b = bodypipe.pipe()
    t = feed(w, chunked(text.encode(), random.Random(3), 100))
    tw = io.TextIOWrapper(io.BufferedReader(b), encoding="utf-8")
    assert tw.read() == text
    t.join()


def test_email_bytes_parser():
    msg = (
        b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n"
        b"Content-Type: multipart/mixed; boundary=XYZ\r\n\r\n"
        b"--XYZ\r\nContent-Type: text/plain\r\n\r\nhello there\r\n"
        b"--XYZ\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"AAECAwQ=\r\n--XYZ--\r\n"
    )
    w, b = bodypipe.pipe()
    t = feed(w, chunked(msg, random.Random(4), 20), delay=0.001)
    m = email.parser.BytesParser().parse(b)
    t.join()
    assert m["Subject"] == "hi"
    parts = list(m.walk())
    assert parts[1].get_payload() == "hello there"
    assert parts[2].get_payload(decode=True) == b"\x00\x01\x02\x03\x04"


def make_tar(files):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_tarfile_stream_while_writing():
    rng = random.Random(5)
    files = {f"dir/file{i}.bin": rng.randbytes(rng.randint(0, 300_000)) for i in range(12)}
    blob = make_tar(files)
    w, b = bodypipe.pipe()
    t = feed(w, chunked(blob, rng, 30_000), delay=0.002)  # another thread still writing
    seen = {}
    with tarfile.open(fileobj=b, mode="r|*") as tf:
        for member in tf:
            f = tf.extractfile(member)
            seen[member.name] = f.read()
    t.join()
    assert seen == files


def test_zipfile_on_closed_buffer():
    rng = random.Random(6)
    files = {f"f{i}.txt": rng.randbytes(rng.randint(1, 50_000)) for i in range(8)}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    blob = out.getvalue()
    w, b = bodypipe.pipe()
    for c in chunked(blob, rng, 4000):
        w.write(c)
    w.close()  # the body is complete: seeking from the end works
    with zipfile.ZipFile(b) as zf:
        assert sorted(zf.namelist()) == sorted(files)
        for name, data in files.items():
            assert zf.read(name) == data
    # from_bytes gives the same
    with zipfile.ZipFile(bodypipe.PyBuffer.from_bytes(blob)) as zf:
        assert zf.testzip() is None

    # The reader hanging up keeps what was written readable (and seekable), so a complete body
    # still opens after b.close(). Before the writer's EOF, though, close() does not make the
    # body complete: the end is unknown, and zipfile's first seek (from the end) says so.
    for writer_eof in (True, False):
        w, b = bodypipe.pipe()
        for c in chunked(blob, rng, 4000):
            w.write(c)
        if writer_eof:
            w.close()
        b.close()
        assert b.closed
        if writer_eof:
            with zipfile.ZipFile(b) as zf:
                assert {name: zf.read(name) for name in zf.namelist()} == files
        else:
            # The seek from the end is `io.UnsupportedOperation` (an OSError, which clients
            # sizing a body take as "stream it"); zipfile reports an OSError as BadZipFile.
            with pytest.raises(io.UnsupportedOperation, match="length is not known"):
                b.seek(0, 2)
            with pytest.raises(zipfile.BadZipFile):
                zipfile.ZipFile(b)
            assert b.read() == blob  # nothing was lost: the written bytes are still there


def multipart_body(boundary, fields, files):
    parts = []
    for k, v in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'.encode() + v.encode() + b"\r\n"
        )
    for k, (fname, data) in files.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{fname}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts)


def test_werkzeug_multipart_upload_from_wsgi_environ():
    from werkzeug.formparser import parse_form_data

    rng = random.Random(7)
    upload = rng.randbytes(3 * 1024 * 1024)
    boundary = "----bodypipeBoundary7MA4YWxkTrZu0gW"
    body = multipart_body(boundary, {"title": "a report", "n": "42"}, {"file": ("report.bin", upload)})
    w, b = bodypipe.pipe(len(body))
    t = feed(w, chunked(body, rng, 64 * 1024), delay=0.0005)
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": f"multipart/form-data; boundary={boundary}",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": b,
    }
    stream, form, files = parse_form_data(environ)
    t.join()
    assert form["title"] == "a report"
    assert form["n"] == "42"
    f = files["file"]
    assert f.filename == "report.bin"
    assert hashlib.sha256(f.read()).hexdigest() == hashlib.sha256(upload).hexdigest()
    f.close()


def test_werkzeug_request_get_data_chunked():
    from werkzeug.wrappers import Request

    body = b"x=1&y=" + b"z" * 100_000
    w, b = bodypipe.pipe()  # unknown length (chunked transfer)
    t = feed(w, chunked(body, random.Random(8), 7000), delay=0.0005)
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "wsgi.input": b,
        "wsgi.input_terminated": True,
    }
    req = Request(environ)
    assert req.form["x"] == "1"
    assert req.form["y"] == "z" * 100_000
    t.join()
