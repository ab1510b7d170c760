"""Ctrl-C during a blocked read raises KeyboardInterrupt in the reading thread (a subprocess)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

CHILD = textwrap.dedent(
    """
    import sys, bodypipe
    w, b = bodypipe.pipe()
    {setup}
    try:
        # Inside the try: a signal that beats the call under extreme load still ends the child
        # cleanly instead of failing the test; the parent waits long enough for the call to block.
        print("ready", flush=True)
        {call}
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(0)
    print("returned", flush=True)
    sys.exit(1)
    """
)


@pytest.mark.parametrize(
    "setup,call",
    [
        ("", "b.read()"),
        ("", "b.read(10)"),
        ("w.write(b'no newline')", "b.readline()"),
        ("", "b.readinto(bytearray(10))"),
        ("", "b.read1(10)"),
        ("w2, b2 = bodypipe.pipe(max_buffered=2); w2.write(b'ab')", "w2.write(b'c')"),
    ],
)
def test_sigint_interrupts_blocked_call(setup, call):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(setup=setup, call=call)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.5)  # let it block in the call
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=30)  # generous bound, no timing assertion
        assert out.strip() == "interrupted"
        assert child.returncode == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
