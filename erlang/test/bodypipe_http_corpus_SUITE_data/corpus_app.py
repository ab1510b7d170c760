"""The WSGI app both servers run when bodypipe_http_corpus_SUITE replays gunicorn's corpus:
it reads the whole body and answers what it saw, one `key=hex(value)` line per field
(`h:NAME` for the HTTP_* and CONTENT_* variables), so the same check reads bodypipe's and
gunicorn's answers."""


def application(environ, start_response):
    error = ""
    try:
        body = environ["wsgi.input"].read()
    except Exception as exc:  # the server aborted the body
        body, error = b"", f"{type(exc).__name__}: {exc}"
    fields = [("method", environ["REQUEST_METHOD"]),
              ("uri", environ.get("RAW_URI", environ.get("REQUEST_URI", ""))),
              ("path_info", environ.get("PATH_INFO", "")),
              ("query", environ.get("QUERY_STRING", "")),
              ("protocol", environ.get("SERVER_PROTOCOL", "")),
              ("error", error)]
    fields += [("h:" + k, v) for k, v in sorted(environ.items())
               if k.startswith("HTTP_") or k in ("CONTENT_TYPE", "CONTENT_LENGTH")]
    out = b"".join(k.encode() + b"=" + v.encode("latin-1").hex().encode() + b"\n"
                   for k, v in fields)
    out += b"body=" + body.hex().encode() + b"\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(out)))])
    return [out]
