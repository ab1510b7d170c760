#!/usr/bin/env python3
"""The body of scripts/proxy_test.sh's uploads: SIZE random bytes on stdout (for curl -T -),
hashed as written, with a gate half-way that proves the proxy streams.

The bytes: each 1 MiB block is a window of a 64 MiB pool read once from os.urandom, at an offset
that advances by a prime number of bytes (so no two blocks are the same window and no window is
aligned to a chunk size of the path): a lost, repeated or reordered piece changes the byte
sequence and so the hash, as with a fresh urandom stream, but the generator runs at the speed
of sha256 (~700 MiB/s here) instead of os.urandom's (~180 MiB/s), which would bound the test.

At SIZE/2 the generator stops writing and polls the server's admin endpoint
(``/_bodypipe/requests``, asked directly, not through the proxy) until the request whose target is
TARGET shows at least SIZE/4 body bytes received. A proxy that spools the body (nginx's default
``proxy_request_buffering on``) opens the upstream request only once the whole body is in, so
the server never sees such a request while half of the body is unsent: the gate times out and
this exits 1. Only the buffers between the two (pipe, sockets, nginx's client_body_buffer_size,
the server's --max-buffered) separate the counts, a few MiB against a margin of SIZE/4, so the
check does not depend on timing.

Usage: proxy_body.py SIZE ADMIN_URL TARGET SHA_FILE [GATE_TIMEOUT_S]
Writes to SHA_FILE one line: the hex sha256 of the whole body and, as JSON, the Content-Length
the server saw at the gate (the request's ``expected``: SIZE when the proxy forwarded a length,
null when it forwarded the body chunked). Progress and failures go to stderr.
"""

import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request

BLOCK = 1 << 20
POOL = 64 << 20
STRIDE = 1_000_003  # a prime: block k starts at k * STRIDE mod (POOL - BLOCK)


def received(admin_url: str, target: str) -> tuple[int, object] | str:
    """The (received, expected) bytes of the request in flight with this target, or why not."""
    try:
        with urllib.request.urlopen(admin_url, timeout=5) as resp:
            rows = json.load(resp)["requests"]
    except (OSError, urllib.error.URLError, ValueError, KeyError) as exc:
        return f"admin endpoint {admin_url}: {exc}"
    for row in rows:
        if row.get("target") == target:
            return int(row["received"]), row.get("expected")
    return "no such request in flight"


def main() -> int:
    size, admin_url, target, sha_file = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    gate_timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 60.0
    out = sys.stdout.buffer
    digest = hashlib.sha256()
    sent = 0
    gate_at, need = size // 2, size // 4
    gated = False
    expected = None
    pool = memoryview(os.urandom(POOL))
    k = 0
    while sent < size:
        if not gated and sent >= gate_at:
            out.flush()  # all of the first half is on its way before the server is asked
            deadline = time.monotonic() + gate_timeout
            while True:
                seen = received(admin_url, target)
                if not isinstance(seen, str) and seen[0] >= need:
                    break
                if time.monotonic() > deadline:
                    got = seen if isinstance(seen, str) else f"{seen[0]:,} bytes"
                    print(f"proxy_body: NOT STREAMED: {sent:,} of {size:,} bytes sent, and after "
                          f"{gate_timeout:.0f} s the server has for {target}: {got} (needed "
                          f"{need:,}); the proxy holds the body back", file=sys.stderr)
                    return 1
                time.sleep(0.05)
            print(f"proxy_body: streamed: with {sent:,} bytes sent the server had received "
                  f"{seen[0]:,} (expected: {seen[1]})", file=sys.stderr)
            gated, expected = True, seen[1]
        n = min(BLOCK, (size if gated else gate_at) - sent)  # stop exactly at the gate
        off = (k * STRIDE) % (POOL - BLOCK)
        block = pool[off : off + n]
        k += 1
        digest.update(block)
        out.write(block)
        sent += n
    out.flush()
    with open(sha_file, "w", encoding="ascii") as f:
        f.write(f"{digest.hexdigest()} {json.dumps(expected)}\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:
        print("proxy_body: curl stopped reading (see its error)", file=sys.stderr)
        sys.exit(1)
