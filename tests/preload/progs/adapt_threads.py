"""Two event-loop threads of one process: the main thread's loop is busy
(an epoll wait that reports one socket, then an 8-byte os.write to a
socketpair, drained now and then); once it has run `warm` iterations, a
second thread waits 40 times (its own epoll, one event each) and sends 8
bytes after each wait (socket.send: told from the main thread's writes in
the stats).  The second thread's waits alone never fill a window of lever
adapt's.  Prints, as JSON, what each stream's reader got (length, and
whether the bytes are those sent, in order).  argv: warm."""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import sys
import threading

SENDS = 40


def drain(sock: socket.socket, h: hashlib._Hash) -> int:
    got = 0
    while True:
        try:
            d = sock.recv(65536)
        except BlockingIOError:
            return got
        h.update(d)
        got += len(d)


def main() -> int:
    warm = int(sys.argv[1])
    a, a_peer = socket.socketpair()
    b, b_peer = socket.socketpair()
    for s in (a, a_peer):
        s.setblocking(False)
    ready_w, ready_r = socket.socketpair()
    ready_w.send(b"x")  # never read: every wait reports it
    warmed = threading.Event()
    done = threading.Event()

    def second() -> None:
        ep = select.epoll()
        ep.register(ready_r.fileno(), select.EPOLLIN)
        warmed.wait()
        for i in range(SENDS):
            assert len(ep.poll(0)) == 1
            assert b.send(b"%07d;" % i) == 8
        b.shutdown(socket.SHUT_WR)
        done.set()

    t = threading.Thread(target=second)
    t.start()
    ep = select.epoll()
    ep.register(ready_r.fileno(), select.EPOLLIN)
    h = hashlib.sha256()
    got = 0
    i = 0
    while not done.is_set():
        assert len(ep.poll(0)) == 1
        assert os.write(a.fileno(), b"%07d;" % i) == 8
        i += 1
        if i == warm:
            warmed.set()
        if i % 64 == 0:
            got += drain(a_peer, h)
    t.join()
    a.shutdown(socket.SHUT_WR)
    a_peer.setblocking(True)
    while d := a_peer.recv(65536):
        h.update(d)
        got += len(d)
    hb = hashlib.sha256()
    got_b = 0
    while d := b_peer.recv(65536):
        hb.update(d)
        got_b += len(d)
    want = hashlib.sha256(b"".join(b"%07d;" % k for k in range(i))).hexdigest()
    want_b = hashlib.sha256(b"".join(b"%07d;" % k for k in range(SENDS))).hexdigest()
    print(json.dumps({"main_same": got == 8 * i and h.hexdigest() == want,
                      "second": got_b, "second_same": hb.hexdigest() == want_b}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
