"""Threads write to their own sockets; a forked child writes too, and its
parent's pending bytes are not sent twice."""

import hashlib
import os
import socket
import threading

pairs = [socket.socketpair() for _ in range(4)]
os.write(1, b"before fork\n")
pid = os.fork()
if pid == 0:
    os.write(1, b"child writes\n")
    pairs[0][0].send(b"from-child;")
    os._exit(3)
_, status = os.waitpid(pid, 0)
os.write(1, b"child exit %d\n" % os.waitstatus_to_exitcode(status))


def worker(i: int) -> None:
    s = pairs[i][0]
    for k in range(500):
        s.send(b"%d:%d;" % (i, k))
    s.shutdown(socket.SHUT_WR)


got: dict[int, bytes] = {}


def reader(i: int) -> None:
    b = pairs[i][1]
    data = b""
    while True:
        c = b.recv(65536)
        if not c:
            break
        data += c
    got[i] = data


ts = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
ts += [threading.Thread(target=reader, args=(i,)) for i in range(4)]
for t in ts:
    t.start()
for t in ts:
    t.join()
for i in range(4):
    print(i, len(got[i]), hashlib.sha256(got[i]).hexdigest()[:16])
