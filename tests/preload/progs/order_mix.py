"""Interleaved writes on stdout, stderr (one pipe), a file, a socketpair and
a pipe, with every deferrable call; prints what arrived, byte for byte.  Only
the socket's calls are deferred (DESIGN.md, "Deferral scope"): the others
pass through, in order with them."""

import hashlib
import os
import socket
import sys
import tempfile
import threading

a, b = socket.socketpair()
r, w = os.pipe()
got: dict[str, bytes] = {}


def drain(name: str, read) -> None:  # noqa: ANN001
    chunks = []
    while True:
        c = read(65536)
        if not c:
            break
        chunks.append(c)
    got[name] = b"".join(chunks)


ts = [
    threading.Thread(target=drain, args=("sock", b.recv)),
    threading.Thread(target=drain, args=("pipe", lambda n: os.read(r, n))),
]
for t in ts:
    t.start()
fd, path = tempfile.mkstemp()
for i in range(400):
    msg = b"<%d:%s>" % (i, b"x" * (i % 37))
    k = i % 7
    if k == 0:
        os.write(1, b"out%d " % i)
    elif k == 1:
        os.write(2, b"err%d " % i)
    elif k == 2:
        a.send(msg)
    elif k == 3:
        os.writev(w, [msg, b"|", msg])
        os.writev(a.fileno(), [msg, b"|"])
    elif k == 4:
        a.sendmsg([msg, b"/"])
    elif k == 5:
        os.write(fd, msg)
    else:
        a.sendall(msg)
        os.write(w, msg)
        os.write(a.fileno(), msg)
a.shutdown(socket.SHUT_WR)
os.close(w)
for t in ts:
    t.join()
os.lseek(fd, 0, 0)
data = os.read(fd, 1 << 20)
os.close(fd)
os.unlink(path)
sys.stdout.flush()
print()
for name in ("sock", "pipe"):
    print(name, len(got[name]), hashlib.sha256(got[name]).hexdigest())
print("file", len(data), hashlib.sha256(data).hexdigest())
