"""A small epoll server shaped like lighttpd's loop, for the levers beyond
ESCA: level-triggered epoll, non-blocking sockets, read until a short read,
answer each request with TCP_CORK on, a header send, a sendfile of the body
and TCP_CORK off, then read again before the next wait (the read that gets
EAGAIN).  Requests are lines "GET <id>\\n"; each answer is a header with the
id and the body's length, then the body.

    cork_server.py PORTFILE BODYFILE NREQUESTS [--dawdle MS]

--dawdle MS: spin MS milliseconds after each read that returned data,
before answering (a client's next request arrives in between: the read
after the answer must not lose it).  The server prints what getsockopt
said of TCP_CORK inside and after each answer, and exits after NREQUESTS
answers.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import time


def main() -> int:
    port_file, body_path, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
    dawdle = float(sys.argv[5]) / 1000 if len(sys.argv) > 5 else 0.0
    body = os.open(body_path, os.O_RDONLY)
    size = os.fstat(body).st_size
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    ls.setblocking(False)
    ep = select.epoll()
    ep.register(ls.fileno(), select.EPOLLIN)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(ls.getsockname()[1]))
    os.rename(port_file + ".tmp", port_file)

    conns: dict[int, tuple[socket.socket, bytearray]] = {}
    served = 0
    corks: list[str] = []
    deadline = time.monotonic() + 60
    while served < total and time.monotonic() < deadline:
        for fd, _ev in ep.poll(1.0):
            if fd == ls.fileno():
                while True:
                    try:
                        c, _ = ls.accept()
                    except BlockingIOError:
                        break
                    c.setblocking(False)
                    conns[c.fileno()] = (c, bytearray())
                    ep.register(c.fileno(), select.EPOLLIN)
                continue
            c, buf = conns[fd]
            while True:
                try:
                    data = c.recv(4096)
                except BlockingIOError:
                    break
                if not data:
                    ep.unregister(fd)
                    del conns[fd]
                    c.close()
                    break
                buf += data
                if dawdle:
                    end = time.monotonic() + dawdle
                    while time.monotonic() < end:
                        pass
                while b"\n" in buf:
                    line, _, rest = bytes(buf).partition(b"\n")
                    buf[:] = rest
                    rid = line.split()[1].decode()
                    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
                    inside = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK)
                    head = f"OK {rid} {size}\n".encode()
                    c.send(head)
                    off = 0
                    while off < size:
                        off += os.sendfile(c.fileno(), body, off, size - off)
                    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
                    after = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK)
                    corks.append(f"{inside}{after}")
                    served += 1
    for c, _ in conns.values():
        c.close()
    print("served", served, "corks", " ".join(sorted(set(corks))))
    return 0 if served == total else 1


if __name__ == "__main__":
    sys.exit(main())
