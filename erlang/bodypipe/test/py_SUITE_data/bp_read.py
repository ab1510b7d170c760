"""Readers for py_SUITE: many_blocked_readers, caller_death_frees_the_thread."""

import queue

# What read_and_record saw, in order, for the Erlang side to wait on.
EVENTS = queue.Queue()


def read_all(buf):
    return buf.read()


def read_some(buf, n):
    return buf.read(n)


def read_and_record(buf):
    EVENTS.put("reading")
    try:
        data = buf.read()
    except Exception as e:
        EVENTS.put(f"{type(e).__name__}: {e}")
        raise
    EVENTS.put(f"read {len(data)} bytes")
    return data


def next_event(timeout=60.0):
    """The next event; "no event" if none comes (the test then fails on it)."""
    try:
        return EVENTS.get(timeout=timeout)
    except queue.Empty:
        return "no event"
