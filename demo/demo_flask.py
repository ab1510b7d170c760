"""A Flask application served unchanged by bodypipe (mounted at /flask by the demo)."""

import hashlib

from flask import Flask, Response, jsonify, request, stream_with_context

app = Flask(__name__)


@app.get("/")
def index():
    return {"hello": "from Flask", "script_root": request.script_root, "path": request.path}


@app.route("/upload", methods=["POST", "PUT"])
def upload():
    # request.stream is wsgi.input itself (wsgi.input_terminated): read as it arrives.
    digest = hashlib.sha256()
    size = 0
    while True:
        chunk = request.stream.read(64 * 1024)
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
    return jsonify(size=size, sha256=digest.hexdigest())


@app.post("/form")
def form():
    files = {
        name: {"filename": f.filename, "sha256": hashlib.sha256(f.read()).hexdigest()}
        for name, f in request.files.items()
    }
    return jsonify(fields=request.form.to_dict(), files=files)


@app.route("/echo", methods=["POST", "PUT"])
def echo():
    return Response(stream_with_context(line for line in request.stream), mimetype="text/plain")
