"""The typed user program (python/typing_check/user_program.py) runs and gets the right bytes.

scripts/test_wheel.sh also type-checks it with `mypy --strict` and `pyright` against the
installed wheel's stub; this test makes sure what type-checks also works.
"""

import importlib.util
import io
import pathlib

import bodypipe

PROGRAM = pathlib.Path(__file__).resolve().parent.parent / "typing_check" / "user_program.py"


def load_program():
    spec = importlib.util.spec_from_file_location("user_program", PROGRAM)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_typed_user_program_runs():
    out = load_program().run()
    assert out == {
        "buffered": b"abc\ndef\n",
        "text": ["héllo\n", "wörld\n"],
        "json": {"a": [1, 2, 3]},
        "copied": 100_000,
        "io_bytes": 5,
        "binary_io": b"first\n",
        "raw": True,  # as_raw(...).readable()
        "wsgi": (b"10", ["200 OK"]),
    }


def test_write_side_of_the_file_api_is_unsupported_not_missing():
    _, buf = bodypipe.pipe(0)
    assert buf.mode == "rb"
    for call in (lambda: buf.truncate(), lambda: buf.truncate(0), lambda: buf.write(b"x"),
                 lambda: buf.writelines([b"x"]), buf.fileno):
        try:
            call()
        except io.UnsupportedOperation:
            pass
        else:
            raise AssertionError("expected io.UnsupportedOperation")
    assert isinstance(buf, io.RawIOBase) and isinstance(buf, io.IOBase)


def test_exit_closes_and_lets_exceptions_through():
    w, buf = bodypipe.pipe()
    try:
        with buf:
            raise KeyError("inside")
    except KeyError:
        pass
    else:
        raise AssertionError("__exit__ swallowed the exception")
    assert buf.closed
    w.close()
