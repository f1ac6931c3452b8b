"""Shared fixtures: the executors to test and the plain os/socket baseline.

Every behaviour test runs one body against each executor of the native core
and, where it is meaningful, against :class:`PlainBatch`, which makes the
same calls directly with os/socket, so the same assertions hold for all.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pyesca
from pyesca import _core
from pyesca.doctor import LKM_DEVICE

# The one list of executors the tests run under: every executor of the core
# but "auto" (which picks one of them), from the core itself (esca.h
# ESCA_EXECUTORS).  Tests parametrise with executor_params(); the preload's
# and the servers' tests with MODES ("plain", the control, first).
EXECUTORS: list[str] = [name for name in _core.executor_names() if name != "auto"]
MODES: list[str] = ["plain", *EXECUTORS]


def uring_skip_reason() -> str | None:
    """Why io_uring cannot be tested here (by probing), or None."""
    probe = _core.uring_probe()
    if probe["error"]:
        err = probe["error"]
        return f"io_uring refused here: [Errno {err}] {os.strerror(err)}"
    if "uring" not in _core.executors():
        return "the uring executor cannot be set up here"
    return None


def executor_skip_reason(name: str) -> str | None:
    """Why the executor NAME (or "plain") cannot be tested here, or None."""
    if name == "plain":
        return None
    if name == "uring":
        return uring_skip_reason()
    if name == "lkm" and not os.path.exists(LKM_DEVICE):
        return (
            f"the lkm executor needs {LKM_DEVICE}, the esca kernel module (lkm/),"
            " not loaded here; `make test-lkm` tests it in a QEMU guest"
        )
    if name not in _core.executors():
        return f"the {name} executor cannot be set up here (see 'esca doctor')"
    return None


def ring_keeps_its_fd() -> bool:
    """Before Linux 6.3 (no IORING_REGISTER_USE_REGISTERED_RING) a thread's
    ring keeps its fd (DESIGN.md, "Contract: fd lifetime"); since, it is
    registered and closed."""
    import re

    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return not m or (int(m.group(1)), int(m.group(2))) < (6, 3)


# Without io_uring every uring test would skip and the suite would pass on
# the sequential executor alone: that is a failed run unless it is asked for.
NO_URING_OPT_OUT = "ESCA_TEST_WITHOUT_URING"


def pytest_sessionstart(session: pytest.Session) -> None:
    reason = uring_skip_reason()
    if reason and os.environ.get(NO_URING_OPT_OUT) != "1":
        pytest.exit(
            f"{reason}: the uring executor, pyesca's default, cannot be tested on"
            f" this machine. Set {NO_URING_OPT_OUT}=1 to run the suite without it"
            " (its tests are then skipped, each with this reason).",
            returncode=3,
        )


def usable_executors() -> list[str]:
    """The executors of EXECUTORS that can be tested here."""
    return [name for name in EXECUTORS if executor_skip_reason(name) is None]


def executor_params(*, plain: bool = False) -> list[Any]:
    """EXECUTORS (after "plain" if asked) as pytest params, each skipped
    with its reason where it cannot be tested here."""
    params: list[Any] = []
    for name in MODES if plain else EXECUTORS:
        reason = executor_skip_reason(name)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def _fd(obj: Any) -> int:
    return obj if isinstance(obj, int) else obj.fileno()


class PlainPending:
    """A completed result of a plain call, with Pending's interface."""

    def __init__(self, op: str, result: int | None, error: OSError | None):
        self.op = op
        self._result = result
        self._error = error

    def done(self) -> bool:
        return True

    def result(self) -> int:
        if self._error is not None:
            raise OSError(self._error.errno, f"{self.op}: {self._error.strerror}")
        assert self._result is not None
        return self._result


def _plain(op: str, fn: Any, *args: Any) -> PlainPending:
    try:
        return PlainPending(op, fn(*args), None)
    except OSError as e:
        return PlainPending(op, None, e)


def _zero(fn: Any, *args: Any) -> Any:
    def go() -> int:
        fn(*args)
        return 0

    return go


def _sock(fd: int) -> socket.socket:
    """A socket object on a dup of fd (ENOTSOCK/EBADF as the plain call)."""
    d = os.dup(fd)
    try:
        return socket.socket(fileno=d)
    except BaseException:
        os.close(d)
        raise


def _write_all(fd: int, data: bytes, send: Any = None, fd_for_wait: int = -1) -> int:
    """What a deferred write returns: all of it, short writes completed
    (waiting for POLLOUT on EAGAIN), or the error, or the partial count."""
    if fd_for_wait < 0:
        fd_for_wait = fd
    view = memoryview(data)
    done = 0
    while True:
        try:
            n = send(view[done:]) if send else os.write(fd, view[done:])
        except BlockingIOError:
            select.select([], [fd_for_wait], [])
            continue
        except OSError:
            if done:
                return done
            raise
        done += n
        if done >= len(data) or n == 0:
            return done


class PlainBatch:
    """The baseline: the ops of pyesca.Batch as plain os/socket calls."""

    executor = "plain"

    def __enter__(self) -> PlainBatch:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def flush(self) -> int:
        return 0

    def finish(self) -> None:
        pass

    def write(self, fd: Any, data: bytes) -> PlainPending:
        return _plain("write", _write_all, _fd(fd), bytes(data))

    def writev(self, fd: Any, buffers: Iterable[bytes]) -> PlainPending:
        bufs = [bytes(b) for b in buffers]

        def go() -> int:
            # the real writev first (writev of no buffers is not write of b"")
            while True:
                try:
                    n = os.writev(_fd(fd), bufs)
                    break
                except BlockingIOError:
                    select.select([], [_fd(fd)], [])
            rest = b"".join(bufs)[n:]
            if not rest or n == 0:
                return n
            return n + _write_all(_fd(fd), rest)

        return _plain("writev", go)

    def _send(self, op: str, fd: Any, bufs: list[bytes], flags: int) -> PlainPending:
        def go() -> int:
            s = _sock(_fd(fd))
            try:
                while True:
                    try:
                        n = (
                            s.sendmsg(bufs, [], flags)
                            if op == "sendmsg"
                            else s.send(bufs[0], flags)
                        )
                        break
                    except BlockingIOError:
                        select.select([], [s], [])
                rest = b"".join(bufs)[n:]
                if not rest or n == 0:
                    return n
                return n + _write_all(0, rest, lambda v: s.send(v, flags), s.fileno())
            finally:
                s.close()

        return _plain(op, go)

    def send(self, fd: Any, data: bytes, flags: int = 0) -> PlainPending:
        return self._send("send", fd, [bytes(data)], flags)

    def sendmsg(self, fd: Any, buffers: Iterable[bytes], flags: int = 0) -> PlainPending:
        return self._send("sendmsg", fd, [bytes(b) for b in buffers], flags)

    def send_many(self, fds: Iterable[Any], data: bytes, flags: int = 0) -> list[PlainPending]:
        return [self.send(fd, data, flags) for fd in fds]

    def sendfile(self, out_fd: Any, in_fd: Any, offset: int | None, count: int) -> PlainPending:
        def go() -> int:
            done = 0
            off = offset
            while done < count:
                n = os.sendfile(_fd(out_fd), _fd(in_fd), off, count - done)
                if n == 0:
                    break
                done += n
                if off is not None:
                    off += n
            return done

        return _plain("sendfile", go)

    def shutdown(self, fd: Any, how: int) -> PlainPending:
        def go() -> int:
            s = _sock(_fd(fd))
            try:
                s.shutdown(how)
            finally:
                s.close()
            return 0

        return _plain("shutdown", go)

    def close(self, fd: Any) -> PlainPending:
        return _plain("close", _zero(os.close, _fd(fd)))

    def fsync(self, fd: Any) -> PlainPending:
        return _plain("fsync", _zero(os.fsync, _fd(fd)))

    def setsockopt(self, fd: Any, level: int, optname: int, value: int | bytes) -> PlainPending:
        def go() -> int:
            s = _sock(_fd(fd))
            try:
                s.setsockopt(level, optname, value)
            finally:
                s.close()
            return 0

        return _plain("setsockopt", go)


def make_batch(executor: str, **kw: Any) -> Any:
    if executor == "plain":
        return PlainBatch()
    return pyesca.batch(executor, **kw)


@pytest.fixture(params=executor_params())
def executor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=executor_params(plain=True))
def mode(request: pytest.FixtureRequest) -> str:
    """An executor, or "plain" for the os/socket baseline."""
    return str(request.param)


@pytest.fixture
def sockpair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    srv = socket.create_server(("127.0.0.1", 0))
    c = socket.create_connection(srv.getsockname())
    s, _ = srv.accept()
    srv.close()
    yield c, s
    c.close()
    s.close()


def read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the peer sends until it shuts down or closes."""
    sock.settimeout(timeout)
    chunks: list[bytes] = []
    while True:
        c = sock.recv(1 << 16)
        if not c:
            return b"".join(chunks)
        chunks.append(c)


def read_pipe(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        c = os.read(fd, 1 << 16)
        if not c:
            return b"".join(chunks)
        chunks.append(c)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        default=False,
        help="run the long variants of tests/reliability (also ESCA_LONG=1)",
    )


def compile_c(src: Path, out_dir: Path, *extra: str) -> Path:
    """cc -Wall -Wextra -Werror SRC -> out_dir/NAME (the one helper every test
    that builds a C program uses); skip when there is no C compiler."""
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (cc)")
    exe = out_dir / src.stem
    p = subprocess.run(
        [cc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(exe), str(src), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    return exe
