"""Shared helpers for the bodypipe tests."""

import threading
import time

import pytest

import bodypipe


def feed(writer, chunks, delay=0.0, close=True, abort=None):
    """Start a thread that writes `chunks` (sleeping `delay` between them) then closes/aborts."""

    def run():
        for c in chunks:
            if delay:
                time.sleep(delay)
            writer.write(c)
        if abort is not None:
            writer.abort(abort)
        elif close:
            writer.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.fixture
def full():
    """A complete body from bytes."""
    return lambda data: bodypipe.PyBuffer.from_bytes(data)


@pytest.fixture
def timeout_guard():
    """Tests that block use settimeout() on the buffer; this is a backstop for thread joins."""
    return 30.0
