"""WSGI apps of real frameworks for bodypipe_http_bodies_SUITE: Django (``django_app``),
Falcon (``falcon_app``), Bottle (``bottle_app``) and Flask (``flask_app``), each answering
``POST /upload`` with the size and SHA-256 of the body it read and the length headers it saw,
and recording when a read raised ``BodyAborted`` (which it then lets escape)."""

import hashlib
import io
import json
import sys
import threading

from bodypipe import BodyAborted

_lock = threading.Lock()
_log = []
_stderr = None


def log():
    with _lock:
        return list(_log)


def reset():
    with _lock:
        _log.clear()


def _record(*item):
    with _lock:
        _log.append(item)


def capture_stderr():
    """Send the interpreter's sys.stderr to a buffer (the suite reads it with stderr())."""
    global _stderr
    _stderr = io.StringIO()
    sys.stderr = _stderr
    return True


def stderr():
    return _stderr.getvalue() if _stderr is not None else ""


def restore_stderr():
    sys.stderr = sys.__stderr__
    return True


def _answer(framework, data, environ):
    return {"framework": framework, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "content_length": environ.get("CONTENT_LENGTH"),
            "transfer_encoding": environ.get("HTTP_TRANSFER_ENCODING")}


def _read(framework, read):
    try:
        return read()
    except BodyAborted as e:
        _record("aborted", framework, str(e))
        raise


# --- Django ----------------------------------------------------------------------------------

import django
from django.conf import settings

settings.configure(
    DEBUG=False, SECRET_KEY="bodypipe-test", ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__,
    MIDDLEWARE=[], DATA_UPLOAD_MAX_MEMORY_SIZE=None, USE_TZ=True,
)
django.setup()

from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402


def _django_upload(request):
    data = _read("django", lambda: request.body)
    return JsonResponse(_answer("django", data, request.META))


def _django_form(request):
    f = request.FILES["file"]
    data = f.read()
    return JsonResponse(dict(_answer("django", data, request.META), note=request.POST["note"]))


urlpatterns = [path("upload", _django_upload), path("form", _django_form)]
django_app = get_wsgi_application()


# --- Falcon ----------------------------------------------------------------------------------

import falcon  # noqa: E402


class _FalconUpload:
    def on_post(self, req, resp):
        data = _read("falcon", lambda: req.bounded_stream.read())
        resp.text = json.dumps(_answer("falcon", data, req.env))
        resp.content_type = "application/json"

    on_put = on_post


class _FalconRaw:
    """Reads wsgi.input to its end (as an app relying on wsgi.input_terminated does)."""

    def on_post(self, req, resp):
        data = _read("falcon", lambda: req.stream.read())
        resp.text = json.dumps(_answer("falcon", data, req.env))
        resp.content_type = "application/json"

    on_put = on_post


falcon_app = falcon.App()
falcon_app.add_route("/upload", _FalconUpload())
falcon_app.add_route("/raw", _FalconRaw())


# --- Bottle ----------------------------------------------------------------------------------

import bottle  # noqa: E402

bottle_app = bottle.Bottle()


@bottle_app.route("/upload", method=["POST", "PUT"])
def _bottle_upload():
    data = _read("bottle", lambda: bottle.request.body.read())
    bottle.response.content_type = "application/json"
    return json.dumps(_answer("bottle", data, bottle.request.environ))


@bottle_app.route("/raw", method=["POST", "PUT"])
def _bottle_raw():
    data = _read("bottle", lambda: bottle.request.environ["wsgi.input"].read())
    bottle.response.content_type = "application/json"
    return json.dumps(_answer("bottle", data, bottle.request.environ))


# --- Flask -----------------------------------------------------------------------------------

import flask  # noqa: E402

flask_app = flask.Flask("bp_body_apps")


@flask_app.route("/raw", methods=["POST", "PUT"])
@flask_app.route("/upload", methods=["POST", "PUT"])
def _flask_upload():
    data = _read("flask", lambda: flask.request.stream.read())
    return flask.jsonify(_answer("flask", data, flask.request.environ))
