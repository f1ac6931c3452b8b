"""An epoll event loop sends 8 MiB on a non-blocking socket to a slow
reader (sends park in flight); it must all arrive, in order, while the loop
keeps serving a second, fast connection."""

import hashlib
import os
import select
import socket
import threading
import time

slow_a, slow_b = socket.socketpair()
fast_a, fast_b = socket.socketpair()
slow_b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
for s in (slow_a, fast_a):
    s.setblocking(False)
payload = os.urandom(1 << 20)
want = hashlib.sha256(payload * 8).hexdigest()
received = hashlib.sha256()
count = [0]


def slow_reader() -> None:
    while True:
        c = slow_b.recv(8192)
        if not c:
            break
        received.update(c)
        count[0] += len(c)
        time.sleep(0.0005)


t = threading.Thread(target=slow_reader)
t.start()
ep = select.epoll()
ep.register(slow_a.fileno(), select.EPOLLOUT)
ep.register(fast_b.fileno(), select.EPOLLIN)
view = memoryview(payload * 8)
sent = 0
pings = 0
fast_a.send(b"ping")
while sent < len(view) or pings < 50:
    for fd, ev in ep.poll(1.0):
        # the library's own wake-ups must never reach the program
        assert fd in (slow_a.fileno(), fast_b.fileno()), f"unknown fd {fd} from epoll"
        if fd == slow_a.fileno() and sent < len(view):
            try:
                sent += slow_a.send(view[sent : sent + 65536])
            except BlockingIOError:
                pass
            if sent >= len(view):
                ep.modify(slow_a.fileno(), 0)
        elif fd == fast_b.fileno():
            fast_b.recv(4)
            pings += 1
            if pings < 50:
                fast_a.send(b"ping")
slow_a.shutdown(socket.SHUT_WR)
t.join()
print("pings", pings, "bytes", count[0], received.hexdigest() == want)
