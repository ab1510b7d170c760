"""The WSGI app both servers run when bodypipe_http_corpus_SUITE replays gunicorn's corpus:
it reads the whole body and answers what it saw, one `key=hex(value)` line per field
(`h:NAME` for the HTTP_* and CONTENT_* variables), so the same check reads bodypipe's and
gunicorn's answers."""


def application(environ, start_response):
    # An error reading the body propagates: each server answers it its own way (a
    # server that lets the app answer 200 after a broken body would count as accepting it).
    body = environ["wsgi.input"].read()
    fields = [("method", environ["REQUEST_METHOD"]),
              ("uri", environ.get("RAW_URI", environ.get("REQUEST_URI", ""))),
              ("path_info", environ.get("PATH_INFO", "")),
              ("query", environ.get("QUERY_STRING", "")),
              ("protocol", environ.get("SERVER_PROTOCOL", ""))]
    fields += [("h:" + k, v) for k, v in sorted(environ.items())
               if k.startswith("HTTP_") or k in ("CONTENT_TYPE", "CONTENT_LENGTH")]
    out = b"".join(k.encode() + b"=" + v.encode("latin-1").hex().encode() + b"\n"
                   for k, v in fields)
    out += b"body=" + body.hex().encode() + b"\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(out)))])
    return [out]
