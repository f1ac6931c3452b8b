"""A server socket with bytes a client does not read yet, then one call
(tests/preload/test_parked_calls.py).  Usage: parked_calls.py CASE SIZE

SIZE bytes go out in one non-blocking send (16m: more than the socket
takes, so under esca, with ESCA_BUDGET above it, the rest parks; 1m: all of
it fits the kernel's buffers).  CASE:
- opt:NAME   setsockopt NAME (an option independent of the bytes);
- look:NAME  a call that only looks at the socket (LOOKS);
- splice     splice 5 bytes from a pipe into the socket (its full buffer:
             EAGAIN);
- dprintf    the same 5 bytes by libc's dprintf;
- close:L    SO_LINGER { 1, L } then close (L = -1: no SO_LINGER);
- inherit:L  close:-1, the listener having SO_LINGER { 1, L } (accepted
             sockets inherit it);
- lingerother  close:1, and just before it a second connection's 5 bytes
             sent: other_ms says when its client got them;
- reset2     close:0 with a second connection's SIZE bytes (a pattern)
             parked too, which its client reads after the reset: ok2 says
             whether it got exactly what its send's count said.
Then the client reads until EOF, a reset or 3 s without a byte (0.5 s
after opt and look).  Prints one
JSON line: n (the send's count), call_ms (the setsockopt, look or close),
res (what a look returned, or its errno's name), got (bytes the client
read), end ("eof", "reset" or "idle").
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import struct
import sys
import threading
import time

OPTS = {
    "SO_LINGER": (socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 5)),
    "SO_KEEPALIVE": (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    "SO_RCVBUF": (socket.SOL_SOCKET, socket.SO_RCVBUF, 65536),
    "SO_RCVTIMEO": (socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 1, 0)),
    "TCP_KEEPIDLE": (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30),
    "TCP_USER_TIMEOUT": (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 30000),
}

LOOKS = {
    "TCP_INFO": lambda s: len(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)),
    "SO_ERROR": lambda s: s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR),
    "fstat": lambda s: oct(os.fstat(s.fileno()).st_mode >> 12),
    "FIONREAD": lambda s: fcntl.ioctl(s.fileno(), 0x541B, b"\0" * 4) != b"",
    "lseek": lambda s: os.lseek(s.fileno(), 0, os.SEEK_CUR),
    # the send queue holds bytes (under esca: the kernel's, not the parked)
    "SIOCOUTQ": lambda s: struct.unpack("i", fcntl.ioctl(s.fileno(), 0x5411, b"\0" * 4))[0] > 0,
    # what the program set, its setsockopt perhaps queued behind the bytes
    "NODELAY": lambda s: (s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
                          s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))[1],
}


def dprintf_in(s: socket.socket) -> int:
    """5 bytes by libc's dprintf (a write inside glibc): its count, or
    OSError with its errno."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    r = libc.dprintf(s.fileno(), b"later")
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


def splice_in(s: socket.socket) -> int:
    """5 bytes from a pipe into the socket (a write no interposer defers)."""
    r, w = os.pipe()
    os.write(w, b"later")
    return os.splice(r, s.fileno(), 5)



def main() -> None:
    case, size = sys.argv[1], int(sys.argv[2].removesuffix("m")) << 20
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    if case.startswith("inherit:"):  # the listener's SO_LINGER, as accept gives it
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, int(case[8:])))
        case = "close:-1"
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before the window
    c.connect(lst.getsockname())
    s, _ = lst.accept()
    s.setblocking(False)
    kind, _, arg = case.partition(":")
    if kind == "lingerother":  # close:1 while another socket's bytes are queued
        kind, arg = "close", "1"
        c2 = socket.socket()
        c2.connect(lst.getsockname())
        s2, _ = lst.accept()
        got2: list[float] = []
        t2 = threading.Thread(target=lambda: (c2.recv(16), got2.append(time.monotonic())))
        t2.start()
    if kind == "reset2":
        kind, arg = "close", "0"
        c2 = socket.socket()
        c2.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c2.connect(lst.getsockname())
        s2, _ = lst.accept()
        s2.setblocking(False)
        pattern = (bytes(range(251)) * (size // 251 + 1))[:size]
        n2 = s2.send(pattern)
    if kind == "close" and int(arg) >= 0:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, int(arg)))
    n = s.send(b"x" * size)
    time.sleep(0.1)  # under esca: flushed, the rest parked
    res = None
    t0 = time.monotonic()
    if kind == "opt":
        s.setsockopt(*OPTS[arg])
    elif kind in ("look", "splice", "dprintf"):
        try:
            res = (LOOKS[arg](s) if kind == "look" else
                   splice_in(s) if kind == "splice" else dprintf_in(s))
        except OSError as e:
            res = errno.errorcode[e.errno]
    else:
        if case == "lingerother":
            s2.send(b"hello")  # deferred: it must not wait for the close
        s.close()
    call_ms = (time.monotonic() - t0) * 1000
    got, end = 0, "idle"
    c.settimeout(3 if kind == "close" else 0.5)  # close ends in EOF or a reset
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
    out = {"n": n, "call_ms": round(call_ms), "res": res, "got": got, "end": end}
    if case == "lingerother":
        t2.join()
        out["other_ms"] = round((got2[0] - t0) * 1000)
    if case == "reset2":
        buf = bytearray()
        c2.settimeout(1)
        try:
            while len(buf) < n2:
                d = c2.recv(1 << 20)
                if not d:
                    break
                buf += d
        except TimeoutError:
            pass
        out["ok2"] = bytes(buf) == pattern[:n2]
        out["got2"] = len(buf)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
