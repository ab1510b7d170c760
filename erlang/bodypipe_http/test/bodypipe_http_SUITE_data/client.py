"""HTTP clients for bodypipe_http_SUITE (Python's http.client and raw sockets, 127.0.0.1 only).

    client.py concurrent PORT N SIZE      N uploads of SIZE random bytes at once; checks every hash
    client.py inflight PORT N SIZE        N uploads that send half their body, print "ready", wait
                                          for a line on stdin, send the rest; checks every hash
    client.py disconnect PORT SIZE SENT   declares SIZE bytes, sends SENT, closes the socket
    client.py status PORT METHOD PATH CONTENT_LENGTH   sends only the headers, prints the status

Prints one JSON line; exits non-zero on any failure. Every wait is bounded.
"""

import hashlib
import http.client
import json
import os
import socket
import sys
import threading
import time

TIMEOUT = 120


def upload(port, body, path="/upload"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    conn.request("POST", path, body=body, headers={"Content-Type": "application/octet-stream"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, json.loads(data)


def concurrent(port, n, size):
    bodies = [os.urandom(size) for _ in range(n)]
    results = [None] * n
    barrier = threading.Barrier(n, timeout=TIMEOUT)

    def worker(i):
        try:
            barrier.wait()
            status, out = upload(port, bodies[i])
            ok = status == 200 and out == {"size": size, "sha256": hashlib.sha256(bodies[i]).hexdigest()}
            results[i] = ok or (status, out)
        except Exception as exc:  # reported below
            results[i] = repr(exc)

    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    secs = time.monotonic() - start
    bad = [r for r in results if r is not True]
    print(json.dumps({"ok": n - len(bad), "failed": len(bad), "errors": [str(b) for b in bad[:3]],
                      "seconds": round(secs, 3)}))
    return 0 if not bad else 1


def inflight(port, n, size):
    half = size // 2
    bodies = [os.urandom(size) for _ in range(n)]
    socks = []
    for body in bodies:
        s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
                  b"Content-Length: %d\r\n\r\n" % size + body[:half])
        socks.append(s)
    print("ready", flush=True)
    if not sys.stdin.readline():
        return 1
    for s, body in zip(socks, bodies):
        s.sendall(body[half:])
    bad = 0
    for s, body in zip(socks, bodies):
        f = s.makefile("rb")
        status = f.readline()
        length = 0
        while True:
            line = f.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        out = json.loads(f.read(length))
        if not status.startswith(b"HTTP/1.1 200") or out["sha256"] != hashlib.sha256(body).hexdigest():
            bad += 1
        s.close()
    print(json.dumps({"ok": n - bad, "failed": bad}))
    return 0 if not bad else 1


def disconnect(port, size, sent):
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s.sendall(b"PUT /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % size)
    s.sendall(os.urandom(sent))
    time.sleep(0.2)
    s.close()
    print(json.dumps({"sent": sent, "declared": size}))
    return 0


def status(port, method, path, content_length):
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s.sendall(b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\nContent-Length: %s\r\n\r\n"
              % (method.encode(), path.encode(), content_length.encode()))
    line = s.makefile("rb").readline().decode()
    s.close()
    print(json.dumps({"status": int(line.split()[1])}))
    return 0


def main(argv):
    cmd, port, args = argv[1], int(argv[2]), argv[3:]
    if cmd == "concurrent":
        return concurrent(port, int(args[0]), int(args[1]))
    if cmd == "inflight":
        return inflight(port, int(args[0]), int(args[1]))
    if cmd == "disconnect":
        return disconnect(port, int(args[0]), int(args[1]))
    if cmd == "status":
        return status(port, *args)
    raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
