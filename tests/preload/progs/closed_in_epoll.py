"""A socket in an epoll set, closed by the program while its bytes wait for
a client that does not read yet: the set must not report it after the
close, as Linux's close takes it out at once
(tests/preload/test_closed_in_epoll.py).  Usage: closed_in_epoll.py CASE

The client's receive buffer is small; the server's socket is non-blocking
and registered with its fd as the event's data.  CASE:
- parked   EPOLLIN|EPOLLOUT|EPOLLET|EPOLLRDHUP; one send of 16 MiB (under
           esca, with ESCA_BUDGET above it, deferred whole: the rest parks
           at the flush), 0.1 s, close; the client then reads everything,
           and room opening on the socket is an EPOLLOUT edge;
- queued   the same registration; sends of 1 MiB in a row until one would
           block (under esca: eight, none flushed yet), then close at once;
           the client reads everything;
- held     the same, the 16 MiB sent by another thread (its table), which
           stays alive; the main thread closes (a close held for them);
- level    EPOLLIN, level-triggered; 16 MiB as in parked, close; then the
           client sends 5 bytes and reads nothing: Linux's set reports
           nothing (its socket is closed), the old library's reported
           EPOLLIN of a closed fd;
- dup      as level, with a dup of the socket open: Linux leaves the
           registration (the open file lives on) and reports EPOLLIN of
           the closed number, so must the library;
- idle     as level with 5 bytes sent (nothing parks): the close runs in
           the flush before the wait;
- sendclose  as idle, the close right after the send (queued behind it;
           it goes at the flush, nothing parks): no system call more;
- fork     as idle, the set waited on once; a child closes its copy of the
           socket and exits: the parent's registration stays, as Linux's
           (the file is open in the parent), and reports the 5 bytes;
- threadend  parked's (its registration too), by a worker thread that waits on the set once,
           sends, closes and ends (its table goes to the library's heir
           thread, which runs the close); the main thread then waits;
- waiter   as idle, but another thread waits on the set, and the closing
           thread makes no system call for 0.3 s after its close (run with
           ESCA_FLUSH_US=1000000: no timer shot flushes it either): the
           client's 5 bytes come in that time.
The server polls its set every 0.1 s while the client works, and 0.3 s
after.  Prints one JSON line: n (what the send calls returned, summed),
events (the first 20 [data, mask] pairs the set reported after the close), got
(bytes the client read), end ("eof", "reset", "idle" or "-": not read).
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import threading
import time

BIG = 16 << 20
ET = select.EPOLLIN | select.EPOLLOUT | select.EPOLLET | select.EPOLLRDHUP


def read_all(c: socket.socket, out: dict) -> None:
    got, end = 0, "idle"
    c.settimeout(3)
    try:
        while True:
            d = c.recv(1 << 20)
            if not d:
                end = "eof"
                break
            got += len(d)
    except ConnectionResetError:
        end = "reset"
    except TimeoutError:
        pass
    out.update(got=got, end=end)


def forked(s: socket.socket, c: socket.socket, ep: select.epoll, fd: int) -> None:
    """Case fork: the parent's set after a child closed its copy."""
    n = s.send(b"x" * 5)
    ep.poll(0.05)  # waited on by this thread
    pid = os.fork()
    if pid == 0:
        s.detach()
        os.close(fd)
        os._exit(0)
    os.waitpid(pid, 0)
    c.send(b"hello")
    events = [[d, m] for d, m in ep.poll(0.3)]
    print(json.dumps({"n": n, "got": 0, "end": "-", "events": events[:20], "fd": fd}))


def thread_ends(s: socket.socket, c: socket.socket, ep: select.epoll, fd: int) -> None:
    """Case threadend: the main thread's waits after a worker closed."""
    sent: list[int] = []

    def worker() -> None:
        ep.poll(0)
        sent.append(s.send(b"t" * BIG))
        s.detach()
        os.close(fd)

    w = threading.Thread(target=worker)
    w.start()
    w.join()
    # Python's join returns before the thread's exit runs its TLS
    # destructors (the library's thread end): C's pthread_join waits for
    # it; here, the kernel's task gone
    task = f"/proc/self/task/{w.native_id}"
    for _ in range(500):
        if not os.path.exists(task):
            break
        time.sleep(0.01)
    out: dict = {"n": sent[0], "got": 0, "end": "-"}
    reader = threading.Thread(target=read_all, args=(c, out))
    reader.start()
    events: list[list[int]] = []
    while reader.is_alive():
        events += [[d, m] for d, m in ep.poll(0.1)]
    reader.join()
    out.update(events=events[:20], fd=fd)
    print(json.dumps(out))


def waiter(s: socket.socket, c: socket.socket, ep: select.epoll, fd: int) -> None:
    """Case waiter: the set's events after the close, as its other thread
    saw them."""
    events: list[list[int]] = []
    closed, stop, go = threading.Event(), threading.Event(), threading.Event()

    def wait_loop() -> None:
        while not stop.is_set():
            got = ep.poll(0.05)
            if closed.is_set():
                events.extend([d, m] for d, m in got)

    def client() -> None:
        go.wait()
        c.send(b"hello")
        c.settimeout(1)
        try:
            c.recv(16)  # blocks: this thread's flush sends the 5 bytes
        except OSError:
            pass

    w = threading.Thread(target=wait_loop)
    w.start()
    cl = threading.Thread(target=client)
    cl.start()
    n = s.send(b"x" * 5)
    time.sleep(0.2)  # flushed; the other thread is in its wait by now
    s.detach()
    os.close(fd)
    closed.set()
    go.set()
    t = time.monotonic() + 0.3
    while time.monotonic() < t:  # no system call: no flush trigger
        pass
    stop.set()
    w.join()
    cl.join()
    print(json.dumps({"n": n, "got": 0, "end": "-", "events": events[:20], "fd": fd}))


def main() -> None:
    case = sys.argv[1]
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before the window
    c.connect(lst.getsockname())
    s, _ = lst.accept()
    s.setblocking(False)
    fd = s.fileno()
    ep = select.epoll()
    ep.register(fd, ET if case in ("parked", "queued", "held", "threadend") else select.EPOLLIN)
    keep = os.dup(fd) if case == "dup" else -1
    n = 0
    hold = threading.Event()
    if case == "waiter":
        return waiter(s, c, ep, fd)
    if case == "fork":
        return forked(s, c, ep, fd)
    if case == "threadend":
        return thread_ends(s, c, ep, fd)
    if case == "queued":
        try:
            for _ in range(64):
                n += s.send(b"q" * (1 << 20))
        except BlockingIOError:
            pass
    elif case == "held":
        sent: list[int] = []
        t = threading.Thread(target=lambda: (sent.append(s.send(b"h" * BIG)), hold.wait()))
        t.start()
        while not sent:
            time.sleep(0.01)
        n = sent[0]
        time.sleep(0.1)  # under esca: flushed by that thread's timer, the rest parked
    elif case == "sendclose":
        n = s.send(b"x" * 5)
    else:
        n = s.send(b"x" * (5 if case == "idle" else BIG))
        time.sleep(0.1)
    if case not in ("queued", "sendclose"):  # (whose sends stay queued)
        ep.poll(0)  # the events before the close are not the test's
    s.detach()
    os.close(fd)
    out: dict = {"n": n, "got": 0, "end": "-"}
    if case in ("level", "dup", "idle", "sendclose"):
        c.send(b"hello")
        reader = None
    else:
        reader = threading.Thread(target=read_all, args=(c, out))
        reader.start()
    events: list[list[int]] = []
    t0 = time.monotonic()
    while (reader and reader.is_alive()) or time.monotonic() - t0 < 0.3:
        events += [[d, m] for d, m in ep.poll(0.1)]
    if reader:
        reader.join()
    hold.set()
    out["events"] = events[:20]  # level-triggered: thousands (dup)
    out["fd"] = fd
    if keep >= 0:
        os.close(keep)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
