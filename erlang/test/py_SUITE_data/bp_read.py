"""A reader for py_SUITE:many_blocked_readers."""


def read_all(buf):
    return buf.read()
