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


def until(what, cond):
    """Waits (yielding the GIL) until `cond()` holds; fails after 30 s, which only a hang reaches.
    With `buf.stats().reader_waiting`/`writer_waiting` it waits for a thread to park, so that the
    test then exercises the wake-up every time."""
    give_up = time.monotonic() + 30
    while not cond():
        assert time.monotonic() < give_up, f"never happened: {what}"
        time.sleep(0.001)


@pytest.fixture
def full():
    """A complete body from bytes."""
    return lambda data: bodypipe.PyBuffer.from_bytes(data)


@pytest.fixture
def timeout_guard():
    """Tests that block use settimeout() on the buffer; this is a backstop for thread joins."""
    return 30.0
