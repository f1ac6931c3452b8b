"""The Python API: lifecycle, errors, bad input, stats, threads, fork."""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys
import threading
import time

import pytest

import pyesca
from conftest import EXECUTORS, read_all, uring_skip_reason
from pyesca import _core


def test_executors_and_probe() -> None:
    names = pyesca.executors()
    assert "sequential" in names
    assert set(names) <= set(EXECUTORS)
    assert pyesca.auto_executor() in names
    probe = _core.uring_probe()
    assert set(probe) >= {"error", "opcodes", "setsockopt_cmd", "setup_flags"}
    assert isinstance(probe["error"], int) and probe["error"] >= 0
    assert isinstance(probe["setsockopt_cmd"], bool)
    assert isinstance(probe["setup_flags"], int)
    if probe["error"] == 0:
        assert "SENDMSG" in probe["opcodes"]
        assert "uring" in names
        assert pyesca.auto_executor() == "uring"
    assert _core.op_names()[:3] == ("write", "writev", "send")


def test_executor_attribute(executor: str) -> None:
    with pyesca.batch(executor) as b:
        assert b.executor == executor
    assert pyesca.batch().executor == pyesca.auto_executor()


def test_unknown_executor() -> None:
    with pytest.raises(ValueError, match="unknown executor"):
        pyesca.batch("nope")
    with pytest.raises(TypeError):
        pyesca.batch(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kw", [{"capacity": 0}, {"capacity": -1}, {"byte_budget": 0}, {"byte_budget": -5}]
)
def test_bad_sizes(kw: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        pyesca.batch(**kw)  # type: ignore[arg-type]


def test_closed_fd_result(executor: str) -> None:
    a, b = socket.socketpair()
    r, w = os.pipe()
    os.close(w)
    b.close()
    a.close()  # a.fileno() is now -1
    with pyesca.batch(executor) as batch:
        p_sock = batch.send(a, b"x")
        p_fd = batch.write(w, b"x")
        p_neg = batch.write(-1, b"x")
        p_close = batch.close(w)
        assert p_sock.done() and p_neg.done()  # refused at once by the core
    for p, op in ((p_sock, "send"), (p_fd, "write"), (p_neg, "write"), (p_close, "close")):
        with pytest.raises(OSError) as ei:
            p.result()
        assert type(ei.value) is OSError
        assert ei.value.errno == errno.EBADF
        assert str(ei.value) == f"[Errno 9] {op}: Bad file descriptor"
    os.close(r)


def test_errno_subclasses(executor: str) -> None:
    a, b = socket.socketpair()
    b.close()
    with pyesca.batch(executor) as batch:
        p = batch.send(a, b"x" * 10)
    with pytest.raises(BrokenPipeError) as ei:
        p.result()
    assert "send:" in str(ei.value)
    a.close()


def test_type_errors(executor: str, sockpair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = sockpair
    with pyesca.batch(executor) as batch:
        with pytest.raises(TypeError):
            batch.send("sock", b"x")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            batch.send(a, "text")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            batch.send(a, b"x", "flags")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            batch.write(1.5, b"x")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            batch.writev(a, 5)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            batch.writev(a, [b"x", 3])  # type: ignore[list-item]
        with pytest.raises(TypeError):
            batch.setsockopt(a, socket.SOL_SOCKET, socket.SO_SNDBUF, "x")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            batch.sendfile(a, 0, "0", 10)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            batch.sendfile(a, 0, None, None)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            batch.send(a)  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            batch.send_many(a, b"x")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            batch.sendmsg(a, [b"x"], [(1, 2, b"")])  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            batch.sendmsg(a, [b"x"], bogus=1)  # type: ignore[call-arg]
        assert batch.pending == 0


def test_value_errors(executor: str, sockpair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = sockpair
    with pyesca.batch(executor) as batch:
        with pytest.raises(ValueError):
            batch.sendfile(a, 0, None, -1)
        with pytest.raises(ValueError):
            batch.sendfile(a, 0, -1, 10)
        with pytest.raises(ValueError, match="ancillary"):
            batch.sendmsg(a, [b"x"], ancdata=[(1, 2, b"")])
        with pytest.raises(ValueError, match="address"):
            batch.sendmsg(a, [b"x"], address="/tmp/x")  # type: ignore[arg-type]
        assert batch.sendmsg(a, [b"x"], ancdata=[], address=None, flags=0).result() == 1


def test_many_ops_flush_by_themselves(
    executor: str, sockpair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = sockpair
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.append(read_all(b)))
    t.start()
    with pyesca.batch(executor, capacity=1024) as batch:
        ps = [batch.send(a, b"%05d" % i) for i in range(5000)]
        batch.shutdown(a, socket.SHUT_WR)
    t.join(10)
    assert all(p.result() == 5 for p in ps)
    assert got == [b"".join(b"%05d" % i for i in range(5000))]
    st = batch.stats()
    assert st["ops"]["send"] == 5000
    assert st["completed"] == 5001
    assert st["flush_why"]["budget"] >= 4
    assert st["flushes"] >= 5


def test_byte_budget_full_flushes(
    executor: str, sockpair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = sockpair
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.append(read_all(b)))
    t.start()
    chunks = [os.urandom(3000) for _ in range(50)]
    with pyesca.batch(executor, byte_budget=16384) as batch:
        ps = [batch.send(a, c) for c in chunks]
        big = batch.send(a, b"B" * 100_000)  # over the whole budget
        batch.shutdown(a, socket.SHUT_WR)
    t.join(10)
    assert [p.result() for p in ps] == [3000] * 50
    assert big.result() == 100_000
    assert got == [b"".join(chunks) + b"B" * 100_000]


def test_op_after_block(executor: str, sockpair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = sockpair
    with pyesca.batch(executor) as batch:
        batch.send(a, b"x")
    assert batch.closed
    with pytest.raises(ValueError, match="closed batch"):
        batch.send(a, b"x")
    with pytest.raises(ValueError, match="closed batch"):
        batch.flush()
    with pytest.raises(ValueError, match="closed batch"):
        batch.send_many([a], b"x")
    batch.finish()  # idempotent
    assert "closed" in repr(batch)


def test_result_before_flush_flushes(
    executor: str, sockpair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = sockpair
    with pyesca.batch(executor) as batch:
        p = batch.send(a, b"abc")
        q = batch.send(a, b"def")
        assert not p.done() and not q.done()
        assert batch.pending == 2
        assert "pending" in repr(p)
        with pytest.raises(BlockingIOError):  # deferred: nothing sent yet
            b.recv(10, socket.MSG_DONTWAIT)
        assert p.result() == 3
        assert q.done()
        assert batch.pending == 0
        assert b.recv(10) == b"abcdef"
        assert batch.stats()["flush_why"]["result"] == 1
        r = batch.send(a, b"g")
    assert r.result() == 1
    assert p.op == "send" and p.fd == a.fileno()
    assert "result=3" in repr(p)


def test_explicit_flush(executor: str, sockpair: tuple[socket.socket, socket.socket]) -> None:
    a, b = sockpair
    with pyesca.batch(executor) as batch:
        batch.send(a, b"one")
        assert batch.flush() == 1
        assert b.recv(10) == b"one"
        assert batch.flush() == 0
        batch.send(a, b"two")
    assert b.recv(10) == b"two"


def test_exception_in_block_still_flushes(
    executor: str, sockpair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = sockpair
    with pytest.raises(KeyError):
        with pyesca.batch(executor) as batch:
            p = batch.send(a, b"data")
            raise KeyError
    assert p.result() == 4
    assert b.recv(10) == b"data"


def test_batch_start_flush_current(
    executor: str, sockpair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = sockpair
    assert pyesca.current() is None
    batch = pyesca.batch_start(executor)
    assert pyesca.current() is batch
    p = batch.send(a, b"seed")
    assert not p.done()
    pyesca.batch_flush()
    assert p.done() and p.result() == 4
    assert batch.closed
    assert pyesca.current() is None
    pyesca.batch_flush()  # nothing open: nothing to do
    assert b.recv(10) == b"seed"


def test_nested_batches_keep_order(
    executor: str, sockpair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = sockpair
    with pyesca.batch(executor) as outer:
        assert pyesca.current() is outer
        outer.send(a, b"1")
        with pyesca.batch(executor) as inner:
            assert pyesca.current() is inner
            inner.send(a, b"2")
        assert pyesca.current() is outer
        outer.send(a, b"3")
        with pyesca.batch(executor, capacity=8) as other:  # another table
            other.send(a, b"4")
        outer.send(a, b"5")
    assert pyesca.current() is None
    a.shutdown(socket.SHUT_WR)
    assert read_all(b) == b"12345"


def test_unentered_batch_flushes_on_dealloc(
    executor: str, sockpair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = sockpair
    batch = pyesca.batch(executor)
    p = batch.send(a, b"gc")
    del batch
    assert p.done() and p.result() == 2
    assert b.recv(10) == b"gc"


def test_table_is_reused(executor: str, sockpair: tuple[socket.socket, socket.socket]) -> None:
    """Repeated batches on one thread reuse one table: stats are per batch."""
    a, b = sockpair
    for i in range(50):
        with pyesca.batch(executor) as batch:
            batch.send(a, b"x")
        st = batch.stats()
        assert st["ops"]["send"] == 1 and st["completed"] == 1 and st["flushes"] == 1
    assert b.recv(100) == b"x" * 50


def test_stats_keys(executor: str, sockpair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = sockpair
    with pyesca.batch(executor) as batch:
        for _ in range(10):
            batch.send(a, b"12345678")
        batch.send(-1, b"x")
    st = batch.stats()
    for key in (
        "executor",
        "ops",
        "bytes",
        "flushes",
        "kernel_entries",
        "completed",
        "errors",
        "fallbacks",
        "batch_sizes",
    ):
        assert key in st
    assert st["executor"] == executor
    assert st["ops"]["send"] == 10
    assert st["bytes"] == 80
    assert st["completed"] == 10
    assert st["batch_sizes"]["8-15"] == 1
    if executor == "uring":
        assert st["kernel_entries"] < 10
    else:
        assert st["kernel_entries"] >= 10


def test_other_thread_refused(executor: str, sockpair: tuple[socket.socket, socket.socket]) -> None:
    a, b = sockpair
    errors: list[BaseException] = []
    with pyesca.batch(executor) as batch:
        p = batch.send(a, b"mine")

        def other() -> None:
            for fn in (lambda: batch.send(a, b"x"), batch.flush, p.result, batch.finish):
                try:
                    fn()
                except RuntimeError as e:
                    errors.append(e)

        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert len(errors) == 4
    assert p.result() == 4
    assert b.recv(10) == b"mine"


def test_threads_each_own_batch(executor: str) -> None:
    pairs = [socket.socketpair() for _ in range(2)]
    results: dict[int, list[int]] = {}
    received: dict[int, bytes] = {}

    def reader(i: int) -> None:
        received[i] = read_all(pairs[i][1])

    def writer(i: int) -> None:
        a = pairs[i][0]
        out = []
        for round_ in range(200):
            with pyesca.batch(executor) as batch:
                ps = [batch.send(a, b"%d:%03d:%d;" % (i, round_, k)) for k in range(10)]
            out += [p.result() for p in ps]
        a.shutdown(socket.SHUT_WR)
        results[i] = out

    threads = [threading.Thread(target=f, args=(i,)) for i in range(2) for f in (reader, writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for i in range(2):
        expect = b"".join(b"%d:%03d:%d;" % (i, r, k) for r in range(200) for k in range(10))
        assert received[i] == expect
        assert results[i] == [len(b"0:000:0;")] * 2000
    for a, b in pairs:
        a.close()
        b.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_fork_child_uses_pyesca(executor: str) -> None:
    a, b = socket.socketpair()
    with pyesca.batch(executor) as batch:  # the parent's table exists
        batch.send(a, b"parent;")
    pid = os.fork()
    if pid == 0:  # the child: a fresh table, not the parent's ring
        code = 1
        try:
            with pyesca.batch(executor) as cb:
                ps = [cb.send(a, b"child;") for _ in range(3)]
            code = 0 if [p.result() for p in ps] == [6] * 3 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with pyesca.batch(executor) as batch:
        batch.send(a, b"again;")
    a.shutdown(socket.SHUT_WR)
    assert read_all(b) == b"parent;child;child;child;again;"
    a.close()
    b.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_fork_inside_batch(executor: str) -> None:
    """Ops queued before fork run once (in the parent, before the fork); the
    child may keep using the batch it inherited."""
    a, b = socket.socketpair()
    with pyesca.batch(executor) as batch:
        p = batch.send(a, b"before;")
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                q = batch.send(a, b"child;")
                batch.finish()
                code = 0 if q.result() == 6 and p.result() == 7 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        batch.send(a, b"after;")
    assert p.result() == 7
    a.shutdown(socket.SHUT_WR)
    assert read_all(b) == b"before;child;after;"
    a.close()
    b.close()


def test_uring_refused_is_an_error_not_a_fallback() -> None:
    reason = uring_skip_reason()
    if reason is None:
        assert pyesca.batch("uring").executor == "uring"
    else:
        with pytest.raises(OSError):
            pyesca.batch("uring")
        assert pyesca.batch().executor == "sequential"


def test_public_names() -> None:
    for name in ("batch", "batch_start", "batch_flush", "current", "executors", "Batch", "Pending"):
        assert hasattr(pyesca, name)
    assert pyesca.Batch is _core.Batch
    assert sys.modules["pyesca._core"] is _core


def test_sends_after_a_reset_as_plain(executor: str) -> None:
    """Three sends queued to a TCP connection its peer reset: Linux answers
    ECONNRESET, then EPIPE, EPIPE (the reset is told once).  The core's
    skipped sends of a broken key said ECONNRESET each (the Python API's
    audit, session 10)."""

    def pair() -> tuple[socket.socket, socket.socket]:
        with socket.socket() as lis:
            lis.bind(("127.0.0.1", 0))
            lis.listen(1)
            c = socket.create_connection(lis.getsockname())
            s, _ = lis.accept()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # a reset
        time.sleep(0.05)
        return s, c

    def outcome(call: object) -> int:
        try:
            call()  # type: ignore[operator]
        except OSError as e:
            return e.errno or 0
        return 0

    s, _ = pair()
    plain = [outcome(lambda: s.send(b"x")) for _ in range(3)]
    s.close()
    assert plain == [errno.ECONNRESET, errno.EPIPE, errno.EPIPE], plain
    s, _ = pair()
    with pyesca.batch(executor) as batch:
        ps = [batch.send(s, b"x") for _ in range(3)]
    got = [outcome(p.result) for p in ps]
    s.close()
    assert got == plain, (got, plain)


def test_socket_closed_before_flush_keeps_its_bytes(executor: str) -> None:
    """A socket object closed inside the batch after an op named it: Linux
    sent the bytes at the call, to that socket.  The batch kept only the fd
    number: the next socket made got the number, and the queued bytes (the
    Python API's audit, session 10).  The batch now holds the socket's close
    (socket.socket's _io_refs, as makefile() does) until it is flushed."""
    a, pa = socket.socketpair()
    with pyesca.batch(executor) as batch:
        with a:
            p = batch.send(a, b"for-a")
        c, d = socket.socketpair()  # plainly: a's old number
    assert p.result() == 5
    pa.settimeout(5)
    assert pa.recv(100) == b"for-a"
    assert pa.recv(100) == b""  # then a's close: EOF
    d.setblocking(False)
    with pytest.raises(BlockingIOError):
        d.recv(100)  # nothing for the new connection
    assert a.fileno() == -1  # closed for real after the flush
    for s in (pa, c, d):
        s.close()


def test_pinned_socket_with_a_file_open_stays_open(executor: str) -> None:
    """Several ops in a row on one socket pin it once (session 21), and a
    pin is given back in C for a plain socket.socket the program has not
    closed: a count given back twice, or one kept, would close the socket
    under its makefile() file, or never.  Plainly: the socket closes when
    its file does."""
    a, pa = socket.socketpair()
    fd = a.fileno()
    f = a.makefile("wb", buffering=0)
    with pyesca.batch(executor) as batch:
        ps = [batch.send(a, b"x%d " % i) for i in range(3)]
    assert [p.result() for p in ps] == [3, 3, 3]
    assert a._io_refs == 1  # the file's count, no pin's
    with pyesca.batch(executor) as batch:
        ps = [batch.send(a, b"y%d " % i) for i in range(2)]
        a.close()  # the file still holds it: open, plainly
        ps.append(batch.send(fd, b"end"))
    assert [p.result() for p in ps] == [3, 3, 3]
    assert a.fileno() == fd and a._io_refs == 1 and not f.closed
    f.write(b"+")  # the number is still a's
    f.close()  # then the socket's real close: EOF
    assert a.fileno() == -1
    pa.settimeout(5)
    assert read_all(pa) == b"x0 x1 x2 y0 y1 end+"
    pa.close()


def test_pins_of_a_socket_subclass_go_through_its_method(executor: str) -> None:
    """A subclass of socket.socket may do more in _decref_socketios: its own
    method gives its pin back, once for the ops in a row on it, and the
    socket closed inside the batch closes after the flush."""
    calls: list[int] = []

    class Counted(socket.socket):
        def _decref_socketios(self) -> None:
            calls.append(self._io_refs)
            super()._decref_socketios()

    a0, pa = socket.socketpair()
    a = Counted(fileno=a0.detach())
    with pyesca.batch(executor) as batch:
        p1 = batch.send(a, b"one ")
        p2 = batch.send(a, b"two")
        a.close()
    assert (p1.result(), p2.result()) == (4, 3)
    assert calls == [1] and a.fileno() == -1
    pa.settimeout(5)
    assert read_all(pa) == b"one two"
    pa.close()


def test_sendmsg_flag_the_kernel_refuses(mode: str) -> None:
    """sendmsg(2) refuses the kernel's own MSG_CMSG_COMPAT (bit 31) with
    EINVAL, where sendto(2), which a batched sendmsg of one buffer runs as
    since session 21, ignores it (the review of 846884a: the batch sent the
    byte).  send takes the flag plainly."""
    bit31 = -(2**31)
    s, peer = socket.socketpair()
    with s, peer:
        if mode == "plain":
            try:
                got = s.sendmsg([b"x"], [], bit31)
            except OSError as e:
                got = -e.errno
            sent = s.send(b"y", bit31)
        else:
            with pyesca.batch(mode) as batch:
                p = batch.sendmsg(s, [b"x"], bit31)
            try:
                got = p.result()
            except OSError as e:
                got = -e.errno
            with pyesca.batch(mode) as batch:
                q = batch.send(s, b"y", bit31)
            sent = q.result()
        assert (got, sent) == (-errno.EINVAL, 1)
        peer.settimeout(5)
        assert peer.recv(10) == b"y"


def test_file_objects_closed_inside_the_block(mode: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A file object's close cannot be held as a socket's is: closed inside
    the block, its number went to the next file opened and the queued ops
    with it (the API's audit, session 21: the peer got the third file's
    bytes three times; a write landed in the next file).  An op naming one
    runs at once, with the batch's earlier ops."""
    names = []
    for i in range(3):
        names.append(tmp_path / f"in{i}")
        names[-1].write_bytes(b"file%d" % i)
    a, pa = socket.socketpair()
    outs = [tmp_path / "w1", tmp_path / "w2"]
    keep = open(names[2], "rb")
    if mode == "plain":
        for i in range(2):
            with open(names[i], "rb") as f:
                os.sendfile(a.fileno(), f.fileno(), 0, 5)
        os.sendfile(a.fileno(), keep.fileno(), 0, 5)
        f1 = open(outs[0], "wb", buffering=0)
        f1.write(b"for-w1")
        f1.close()
        f2 = open(outs[1], "wb", buffering=0)
        f2.write(b"for-w2")
        f2.close()
    else:
        with pyesca.batch(mode) as batch:
            ps = []
            for i in range(2):
                with open(names[i], "rb") as f:
                    ps.append(batch.sendfile(a, f, 0, 5))
            ps.append(batch.sendfile(a, keep, 0, 5))
            f1 = open(outs[0], "wb", buffering=0)
            ps.append(batch.write(f1, b"for-w1"))
            f1.close()
            f2 = open(outs[1], "wb", buffering=0)
            ps.append(batch.write(f2, b"for-w2"))
            f2.close()
        assert [p.result() for p in ps] == [5, 5, 5, 6, 6]
    keep.close()
    a.close()
    pa.settimeout(5)
    assert read_all(pa) == b"file0file1file2"
    pa.close()
    assert [o.read_bytes() for o in outs] == [b"for-w1", b"for-w2"]


def test_sslsocket_is_refused(executor: str) -> None:
    """An ssl.SSLSocket's fileno() is the TCP socket under its TLS session:
    an op there put the caller's bytes on the wire in clear (the API's
    audit, session 21).  Refused with a TypeError; nothing is sent."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    a, pa = socket.socketpair()
    tls = ctx.wrap_socket(a, do_handshake_on_connect=False)
    with pyesca.batch(executor) as batch:
        with pytest.raises(TypeError, match="SSLSocket"):
            batch.send(tls, b"secret-password")
        with pytest.raises(TypeError, match="SSLSocket"):
            batch.send_many([tls], b"secret-password")
        assert batch.pending == 0
    tls.close()
    pa.settimeout(5)
    assert read_all(pa) == b""  # nothing reached the peer before its close
    pa.close()


def test_setsockopt_on_a_pipe_behind_a_write(mode: str) -> None:
    """setsockopt on a pipe: ENOTSOCK.  Under uring a setsockopt that goes
    through the ring (behind an earlier op of the batch on the same fd) is a
    URING_CMD, which a pipe refuses with EOPNOTSUPP (the API's audit,
    session 21)."""
    r, w = os.pipe()
    try:
        if mode == "plain":
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            one = ctypes.c_int(1)
            n = os.write(w, b"x")
            rc = libc.setsockopt(w, socket.IPPROTO_TCP, socket.TCP_NODELAY,
                                 ctypes.byref(one), ctypes.sizeof(one))
            got = -ctypes.get_errno() if rc < 0 else rc
        else:
            n, got = 1, 0
            with pyesca.batch(mode) as batch:
                p = batch.write(w, b"x")
                q = batch.setsockopt(w, socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            n = p.result()
            try:
                q.result()
            except OSError as e:
                got = -e.errno
        assert (n, got) == (1, -errno.ENOTSOCK)
        assert os.read(r, 10) == b"x"
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("case", ["sendmsg", "writev-pipe", "writev-closed", "writev-rdonly"])
def test_more_buffers_than_iov_max(mode: str, case: str) -> None:
    """1,025 buffers (IOV_MAX is 1,024): a sendmsg says EMSGSIZE, a writev
    EINVAL, and one on a closed fd or on a pipe's read end EBADF, the fd
    being looked up first (the API's audit, session 21: EINVAL for all;
    the review: the read end)."""
    bufs = [b"x"] * 1025
    a, pa = socket.socketpair()
    r, w = os.pipe()
    closed = os.dup(w)
    os.close(closed)
    try:
        if mode == "plain":
            try:
                if case == "sendmsg":
                    a.sendmsg(bufs)
                else:
                    os.writev({"writev-pipe": w, "writev-closed": closed,
                               "writev-rdonly": r}[case], bufs)
                got = 0
            except OSError as e:
                got = -e.errno
        else:
            with pyesca.batch(mode) as batch:
                if case == "sendmsg":
                    p = batch.sendmsg(a, bufs)
                else:
                    p = batch.writev({"writev-pipe": w, "writev-closed": closed,
                                      "writev-rdonly": r}[case], bufs)
            try:
                got = p.result()
            except OSError as e:
                got = -e.errno
        want = {"sendmsg": errno.EMSGSIZE, "writev-pipe": errno.EINVAL,
                "writev-closed": errno.EBADF, "writev-rdonly": errno.EBADF}[case]
        assert got == -want
    finally:
        for fd in (r, w):
            os.close(fd)
        a.close()
        pa.close()


def test_a_failed_op_leaves_no_flush_behind(executor: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An op naming a file object that fails on a later argument is not
    queued, and the next op is not flushed for it (the review of
    822b01b: it was, `sync` 1 in the stats)."""
    a, pa = socket.socketpair()
    with open(tmp_path / "f", "wb") as f, a, pa:
        with pyesca.batch(executor) as batch:
            with pytest.raises(TypeError):
                batch.write(f, 12345)  # type: ignore[arg-type]
            p = batch.send(a, b"x")
            assert not p.done()
            assert batch.stats()["flush_why"].get("sync", 0) == 0
        assert p.result() == 1


def test_send_many_list_changed_by_fileno(executor: str) -> None:
    """send_many reads its fds from a snapshot: a fileno() that empties the
    list it was given crashed the loop (the review of 822b01b)."""
    pairs = [socket.socketpair() for _ in range(3)]
    fds: list[object] = []

    class Clears:
        def __init__(self, s: socket.socket) -> None:
            self.s = s

        def fileno(self) -> int:
            fds.clear()
            return self.s.fileno()

    fds.extend([Clears(pairs[0][0]), pairs[1][0], pairs[2][0]])
    with pyesca.batch(executor) as batch:
        ps = batch.send_many(fds, b"hi")
    assert [p.result() for p in ps] == [2, 2, 2]
    for x, y in pairs:
        y.settimeout(5)
        assert y.recv(10) == b"hi"
        x.close()
        y.close()
