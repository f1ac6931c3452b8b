"""An event loop whose deferral cannot pay: each wait (timeout 0, one event:
a socket left readable) is followed by one small write to a socketpair,
drained by the same process now and then.  Prints, as JSON, the bytes the
peer got, in order (its sha256 and length).  argv: iterations, and the wait:
epoll (the default), poll, or read: no event loop, each write read back at
once by a blocking recv of the other end (a program that asks and waits for
the answer)."""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import sys


def main() -> int:
    n = int(sys.argv[1])
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    ready_w, ready_r = socket.socketpair()
    ready_w.send(b"x")  # never read: every wait reports it
    kind = sys.argv[2] if len(sys.argv) > 2 else "epoll"
    ep = select.epoll() if kind == "epoll" else select.poll()
    ep.register(ready_r.fileno(), select.EPOLLIN if kind == "epoll" else select.POLLIN)
    h = hashlib.sha256()
    got = 0
    if kind == "read":
        b.setblocking(True)
        for i in range(n):
            assert os.write(a.fileno(), b"%07d;" % i) == 8
            d = b.recv(8)
            while len(d) < 8:
                d += b.recv(8 - len(d))
            h.update(d)
            got += len(d)
        n_loop = 0
    else:
        n_loop = n
    for i in range(n_loop):
        assert len(ep.poll(0)) == 1
        assert os.write(a.fileno(), b"%07d;" % i) == 8
        if i % 64 == 63:
            while True:
                try:
                    d = b.recv(65536)
                except BlockingIOError:
                    break
                h.update(d)
                got += len(d)
    a.shutdown(socket.SHUT_WR)
    b.setblocking(True)
    while d := b.recv(65536):
        h.update(d)
        got += len(d)
    want = hashlib.sha256(b"".join(b"%07d;" % i for i in range(n))).hexdigest()
    print(json.dumps({"bytes": got, "same": h.hexdigest() == want}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
