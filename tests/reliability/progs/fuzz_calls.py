"""Runs one call sequence (JSON on stdin) on many fds through libc (ctypes,
so under LD_PRELOAD through libesca.so's interposers) and prints, as JSON,
every call's result and errno, the bytes each reader got and the file.

fds (writer side): 0-2 unix socketpairs, 3 a TCP loopback pair, 4-5 pipes,
6 a regular file; dups of them, and new socketpairs made by "reopen" after a
close (their writer takes the lowest free number: a number closed a moment
ago, possibly with its close still deferred), are appended as they are made.
Each writer's bytes carry its own letter, so a byte on the wrong fd shows.
The real fd numbers are printed apart ("fds"): they may differ from a plain
run while a deferred close holds a number."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
import sys
import tempfile
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bad_input import buf, iovs, libc, msghdr  # noqa: E402

N_SOCK, TCP, PIPES, FILE = 3, 3, (4, 5), 6
SRC = bytes(x for x in range(256) if not 65 <= x <= 90) * 70  # no letters


def payload(w: int, seq: int, n: int) -> bytes:
    unit = b"%c%05d." % (65 + w, seq)  # letter = the writer it was meant for
    return (unit * (n // len(unit) + 1))[:n]


def main() -> int:
    ops: list[list[Any]] = json.load(sys.stdin)
    writers: list[int] = []
    readers: list[int] = []
    for _ in range(N_SOCK):
        a, b = socket.socketpair()
        writers.append(a.detach())
        readers.append(b.detach())
    srv = socket.create_server(("127.0.0.1", 0))
    c = socket.create_connection(srv.getsockname())
    s, _ = srv.accept()
    srv.close()
    writers.append(c.detach())
    readers.append(s.detach())
    for _ in PIPES:
        r, w = os.pipe()
        writers.append(w)
        readers.append(r)
    fd, path = tempfile.mkstemp()
    writers.append(fd)
    readers.append(-1)
    sfd, spath = tempfile.mkstemp()
    os.pwrite(sfd, SRC, 0)
    os.unlink(spath)
    owner = list(range(len(writers)))  # which original each fd writes for
    dead: set[int] = set()  # closed or shut down: no more calls on it
    closed: set[int] = set()
    out: list[Any] = []
    fdnums: list[int] = list(writers)  # the real numbers, in order of making
    n_orig = len(writers)

    def rec(name: str, r: int) -> None:
        e = ctypes.get_errno() if r < 0 else 0
        out.append([name, r, errno.errorcode.get(e, str(e)) if e else ""])

    for seq, (op, i, n) in enumerate(ops):
        i %= len(writers)
        fd, w = writers[i], owner[i]
        if op == "reopen":
            if i in closed and len(readers) < 26:  # letters A-Z
                a, b = socket.socketpair()
                writers.append(a.detach())
                readers.append(b.detach())
                owner.append(len(readers) - 1)
                fdnums.append(writers[-1])
                out.append(["reopen", len(readers) - 1])
            continue
        if i in dead:
            continue
        ctypes.set_errno(0)
        data = payload(w, seq, n)
        if op == "write":
            rec(op, libc.write(fd, buf(data), len(data)))
        elif op == "writev":
            parts = [data[: n // 3], data[n // 3 : n // 2], data[n // 2 :]]
            rec(op, libc.writev(fd, iovs(parts), 3))
        elif op == "send":
            rec(op, libc.send(fd, buf(data), len(data), socket.MSG_NOSIGNAL))
        elif op == "sendmsg":
            m = msghdr(msg_iov=iovs([data[:1], data[1:]]), msg_iovlen=2)
            rec(op, libc.sendmsg(fd, ctypes.addressof(m), socket.MSG_NOSIGNAL))
        elif op == "sendfile":
            off = ctypes.c_long(seq % 1000)
            rec(op, libc.sendfile(fd, sfd, ctypes.addressof(off), n))
            out.append(["off", off.value])
        elif op == "setsockopt":
            v = ctypes.c_int(n % 2)
            rec(op, libc.setsockopt(fd, socket.IPPROTO_TCP, 3 if n % 3 else 1,
                                    ctypes.addressof(v), 4))
        elif op == "fsync":
            rec(op, libc.fsync(fd))
        elif op == "read":  # our own file, which our pending writes change
            if FILE in closed or FILE in owner[n_orig:]:
                continue  # a dup of it wrote: test_pread_sees_writes_of_a_dup
            got = os.pread(writers[FILE], n, 0)
            out.append(["pread", got.decode("latin-1")])
        elif op == "dup":
            d = libc.dup(fd)
            out.append(["dup", d >= 0])
            if d >= 0:
                fdnums.append(d)
                writers.append(d)
                owner.append(w)
        elif op in ("shutdown", "close"):
            if any(owner[j] == w and j != i and j not in dead for j in range(len(writers))):
                continue  # a dup is still open: keep it simple
            if op == "shutdown":
                rec(op, libc.shutdown(fd, socket.SHUT_WR))
            else:
                rec(op, libc.close(fd))
                closed.add(i)
            dead.add(i)
    for j, fd in enumerate(writers):
        if j not in closed and owner[j] != FILE:
            os.close(fd)  # the readers see EOF
    got: dict[str, str] = {}
    for w, r in enumerate(readers):
        if r < 0:
            continue
        chunks = []
        while True:
            c = os.read(r, 1 << 16)
            if not c:
                break
            chunks.append(c)
        os.close(r)
        data = b"".join(chunks)
        # no byte on the wrong fd: every payload letter is this writer's
        strays = sum(1 for x in data if 65 <= x <= 90 and x != 65 + w)
        got[str(w)] = data.decode("latin-1")
        out.append(["reader", w, len(data), strays])
    if FILE not in closed:
        os.close(writers[FILE])
    with open(path, "rb") as f:  # the file's bytes, whoever closed it
        out.append(["file", f.read(1 << 22).decode("latin-1")])
    os.unlink(path)
    print(json.dumps({"calls": out, "readers": got, "fds": fdnums}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
