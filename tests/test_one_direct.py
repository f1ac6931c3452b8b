"""A flush that carries one call runs it as the plain syscall (DESIGN.md,
"Flush triggers"): no io_uring_enter, counted in flushes_direct; a send a
full socket cuts short goes the ring's way, bytes intact and in order."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

import pyesca
from conftest import read_all, uring_skip_reason

pytestmark = pytest.mark.skipif(uring_skip_reason() is not None, reason=str(uring_skip_reason()))


def _pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


@pytest.mark.parametrize("op", ["send", "write", "writev", "setsockopt", "shutdown", "close"])
def test_one_call_flush_is_one_syscall(op: str) -> None:
    """In a thread of its own: a table is the thread's, and what it learnt of
    a number in an earlier test (a file's, written with WRITE: not a socket)
    would send write/writev the ring's way (it is a hint, kept until the
    table closes the number)."""
    err: list[BaseException] = []

    def body() -> None:
        try:
            one_call_flush(op)
        except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
            err.append(e)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    if err:
        raise err[0]


def one_call_flush(op: str) -> None:
    a, b = _pair()
    with a, b:
        with pyesca.batch("uring") as batch:
            if op == "send":
                p = batch.send(a, b"hello")
            elif op == "write":
                p = batch.write(a, b"hello")
            elif op == "writev":
                p = batch.writev(a, [b"he", b"llo"])
            elif op == "setsockopt":
                p = batch.setsockopt(a, socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            elif op == "shutdown":
                p = batch.shutdown(a, socket.SHUT_WR)
            else:
                fd = a.detach()
                p = batch.close(fd)
        st = batch.stats()
        assert st["flushes"] == 1
        # the plain call only: no io_uring_enter (which would make it 2)
        assert st["kernel_entries"] == 1, st
        assert st["flushes_direct"] == 1, st
        if op in ("send", "write", "writev"):
            assert p.result() == 5
            assert b.recv(16) == b"hello"
        elif op == "setsockopt":
            assert p.result() == 0
        else:
            assert p.result() == 0
            assert b.recv(16) == b""


def test_two_calls_use_the_ring() -> None:
    a, b = _pair()
    with a, b:
        with pyesca.batch("uring") as batch:
            batch.send(a, b"one")
            batch.send(a, b"two")
        st = batch.stats()
        assert st["flushes_direct"] == 0, st
        assert st["kernel_entries"] == 1, st
        assert b.recv(16) == b"onetwo"


def test_one_call_short_rest_goes_to_ring() -> None:
    """A send larger than the socket buffer: the direct try sends part
    (MSG_DONTWAIT), the rest goes the ring's way and comes out whole, in
    order, before a later call's bytes."""
    a, b = _pair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    data = bytes(range(256)) * 4096  # 1 MiB
    got: list[bytes] = []
    with a, b:
        t = threading.Thread(target=lambda: got.append(read_all(b)))
        t.start()
        with pyesca.batch("uring") as batch:
            p = batch.send(a, data)
            batch.flush()  # waits for the rest, which the ring sends
            st = batch.stats()
            assert st["flushes_direct"] == 1, st
            assert st["short_completed"] >= 1 or st["kernel_entries"] >= 2, st
            batch.send(a, b"tail")
            batch.shutdown(a, socket.SHUT_WR)
        t.join(30)
        assert p.result() == len(data)
        assert got == [data + b"tail"]


def test_one_call_error_is_its_result() -> None:
    a, b = _pair()
    b.close()
    with a:
        with pyesca.batch("uring") as batch:
            p = batch.send(a, b"x")
        assert batch.stats()["flushes_direct"] == 1
        with pytest.raises(BrokenPipeError):
            p.result()


@pytest.mark.parametrize("op", ["write", "writev"])
@pytest.mark.parametrize("ring", ["direct", "ring"])
def test_write_to_a_number_that_was_a_socket(op: str, ring: str) -> None:
    """The table remembers a number's kind (a socket, for SEND); the program
    may close it outside the table and the number then means a pipe: a
    write there is a write, not ENOTSOCK.  Found by the contract's fuzz
    (tests/test_contract.py): a 64-byte write to its pipe got ENOTSOCK,
    once the pipe had taken an earlier world's socket's number."""
    with pyesca.batch("uring") as batch:
        a, b = _pair()
        fd = a.fileno()
        assert batch.write(fd, b"sock").result() == 4
        assert b.recv(16) == b"sock"
        a.close()
        b.close()
        r, w = os.pipe()
        if r == fd:
            r = os.dup(r)
            os.close(fd)
        if w != fd:  # the number, now a pipe's write end
            os.dup2(w, fd)
            os.close(w)
        try:
            data = [b"pi", b"pe"]
            p = batch.write(fd, b"pipe") if op == "write" else batch.writev(fd, data)
            if ring == "ring":
                batch.write(fd, b"!")  # two calls: the ring's way
            batch.flush()
            assert p.result() == 4
            want = b"pipe" + (b"!" if ring == "ring" else b"")
            assert os.read(r, 16) == want
        finally:
            os.close(fd)
            os.close(r)


def test_a_files_writes_run_plainly(tmp_path: Path) -> None:
    """A write to a number the table does not know goes into the ring as a
    SEND; its ENOTSOCK and an fstat make a regular file's writes, that one
    and the later ones, the plain syscall: one kernel entry each, no ring
    round, no io-wq worker (core/table.c, esca__fd_not_socket).  In a
    thread of its own (the table's hints are the thread's)."""
    path = os.path.join(tmp_path, "f")
    out: dict[str, int] = {}

    def body() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with pyesca.batch("uring") as batch:
                batch.write(fd, b"a" * 5000)
                batch.write(fd, b"b" * 5000)
            with pyesca.batch("uring") as batch:
                before = batch.stats()["kernel_entries"]
                p = [batch.write(fd, b"c" * 5000), batch.writev(fd, [b"d" * 5000, b"e"])]
                batch.flush()
                out["entries"] = batch.stats()["kernel_entries"] - before
                out["results"] = sum(x.result() for x in p)
        finally:
            os.close(fd)

    t = threading.Thread(target=body)
    t.start()
    t.join(30)
    assert out == {"entries": 2, "results": 10001}
    with open(path, "rb") as f:
        assert f.read() == b"a" * 5000 + b"b" * 5000 + b"c" * 5000 + b"d" * 5000 + b"e"
