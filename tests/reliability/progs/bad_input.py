"""Bad input to the interposers: each case makes its fds, calls libc's
wrappers through ctypes (so under LD_PRELOAD they are libesca.so's
interposers) and records every call's return value and errno, and the bytes
each peer received.  Printed as JSON: {case: [observation, ...]}.

    bad_input.py [CASE ...]        the named cases (default: every case)
    bad_input.py --list            the case names
    bad_input.py --fault CASE      one invalid-pointer case (may crash)

The test runs it without the library (plain), and under the sequential and
uring executors, and compares (tests/reliability/test_bad_input.py).
"""

from __future__ import annotations

import ctypes
import fcntl
import errno
import json
import mmap
import os
import socket
import sys
import tempfile
from collections.abc import Callable
from typing import Any

libc = ctypes.CDLL(None, use_errno=True)
c_ssize = ctypes.c_ssize_t
libc.write.restype = c_ssize
libc.write.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
libc.writev.restype = c_ssize
libc.writev.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.send.restype = c_ssize
libc.send.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.sendto.restype = c_ssize
libc.sendto.argtypes = [
    ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint,
]
libc.sendmsg.restype = c_ssize
libc.sendmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.sendfile.restype = c_ssize
libc.sendfile.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
libc.shutdown.argtypes = [ctypes.c_int, ctypes.c_int]
libc.close.argtypes = [ctypes.c_int]
libc.setsockopt.argtypes = [
    ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint,
]
libc.fcntl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.usleep.argtypes = [ctypes.c_uint]

SSIZE_MAX = (1 << 63) - 1
SIZE_MAX = (1 << 64) - 1
IOV_MAX = os.sysconf("SC_IOV_MAX")
TCP_CORK, TCP_NODELAY = 3, 1


class iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


KEEP: list[Any] = []  # buffers the calls point into stay alive


def buf(data: bytes) -> int:
    b = ctypes.create_string_buffer(data, len(data) or 1)
    KEEP.append(b)
    return ctypes.addressof(b)


def iovs(parts: list[bytes]) -> int:
    arr = (iovec * max(1, len(parts)))()
    for i, p in enumerate(parts):
        arr[i].iov_base = buf(p)
        arr[i].iov_len = len(p)
    KEEP.append(arr)
    return ctypes.addressof(arr)


def guard_page_end(n: int) -> int:
    """An address n bytes before an unmapped page: reading past it faults."""
    m = mmap.mmap(-1, 2 * mmap.PAGESIZE)
    KEEP.append(m)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    m[mmap.PAGESIZE - n : mmap.PAGESIZE] = b"g" * n
    if libc.mprotect(ctypes.c_void_p(base + mmap.PAGESIZE), mmap.PAGESIZE, 0) != 0:
        raise OSError(ctypes.get_errno(), "mprotect")
    return base + mmap.PAGESIZE - n


class Obs:
    """The observations of one case."""

    def __init__(self) -> None:
        self.out: list[Any] = []

    def call(self, name: str, fn: Callable[..., int], *args: Any) -> int:
        ctypes.set_errno(0)
        r = int(fn(*args))
        e = ctypes.get_errno() if r < 0 else 0
        self.out.append([name, r, errno.errorcode.get(e, str(e)) if e else ""])
        return r

    def note(self, name: str, value: Any) -> None:
        self.out.append([name, value])

    def sync(self) -> None:
        """A flush trigger that waits for everything (a sleep)."""
        libc.usleep(2000)

    def drain(self, name: str, fd: int) -> None:
        """What fd's peer/reader has received so far (non-blocking)."""
        self.sync()
        os.set_blocking(fd, False)
        got = b""
        while True:
            try:
                c = os.read(fd, 1 << 16)
            except BlockingIOError:
                break
            except OSError as e:
                got += f"<{errno.errorcode[e.errno]}>".encode()
                break
            if not c:
                got += b"<eof>"
                break
            got += c
        self.note(name, got.decode("latin-1"))


def spair(kind: int = socket.SOCK_STREAM) -> tuple[int, int]:
    a, b = socket.socketpair(socket.AF_UNIX, kind)
    return a.detach(), b.detach()


def tcp_pair() -> tuple[int, int]:
    srv = socket.create_server(("127.0.0.1", 0))
    c = socket.create_connection(srv.getsockname())
    s, _ = srv.accept()
    srv.close()
    return c.detach(), s.detach()


def tmpfile(data: bytes = b"", flags: int = os.O_RDWR) -> int:
    fd, path = tempfile.mkstemp()
    os.pwrite(fd, data, 0)  # not interposed: on disk before the open below
    os.close(fd)
    fd = os.open(path, flags)
    os.unlink(path)
    # away from the low numbers: a closed fd's number, free at once plainly
    # and only at the next flush under the library, is never this file's
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 200)
    os.close(fd)
    return high


FILE_DATA = bytes(range(256)) * 16  # 4 KiB


def file_contents(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 1 << 20).hex()


def all_sends(o: Obs, tag: str, fd: int) -> None:
    """Every deferrable call on fd, each with its own small payload."""
    o.call(f"{tag}:write", libc.write, fd, buf(b"w1"), 2)
    o.call(f"{tag}:writev", libc.writev, fd, iovs([b"v1", b"v2"]), 2)
    o.call(f"{tag}:send", libc.send, fd, buf(b"s1"), 2, 0)
    o.call(f"{tag}:sendto", libc.sendto, fd, buf(b"t1"), 2, 0, None, 0)
    m = msghdr(msg_iov=iovs([b"m1", b"m2"]), msg_iovlen=2)
    KEEP.append(m)
    o.call(f"{tag}:sendmsg", libc.sendmsg, fd, ctypes.addressof(m), 0)
    f = tmpfile(FILE_DATA)
    off = ctypes.c_long(10)
    o.call(f"{tag}:sendfile", libc.sendfile, fd, f, ctypes.addressof(off), 5)
    o.note(f"{tag}:sendfile off", off.value)
    os.close(f)
    one = ctypes.c_int(1)
    o.call(f"{tag}:setsockopt", libc.setsockopt, fd, socket.IPPROTO_TCP, TCP_NODELAY,
           ctypes.addressof(one), 4)
    o.call(f"{tag}:shutdown", libc.shutdown, fd, socket.SHUT_WR)
    o.call(f"{tag}:close", libc.close, fd)


CASES: dict[str, Callable[[Obs], None]] = {}


def case(fn: Callable[[Obs], None]) -> Callable[[Obs], None]:
    CASES[fn.__name__] = fn
    return fn


# ---- invalid and closed fds ------------------------------------------------

@case
def fd_negative(o: Obs) -> None:
    all_sends(o, "-1", -1)
    all_sends(o, "-1000", -1000)


@case
def fd_huge(o: Obs) -> None:
    all_sends(o, "2^30", 1 << 30)
    all_sends(o, "INT_MAX", (1 << 31) - 1)


@case
def fd_never_opened(o: Obs) -> None:
    all_sends(o, "4000", 4000)


@case
def fd_closed_socket(o: Obs) -> None:
    a, b = spair()
    o.call("close", libc.close, a)
    all_sends(o, "closed", a)
    o.drain("peer", b)
    os.close(b)


@case
def fd_closed_after_writes(o: Obs) -> None:
    """Queued bytes, then close, then every call again: EBADF, bytes kept."""
    a, b = spair()
    o.call("write", libc.write, a, buf(b"before"), 6)
    o.call("close", libc.close, a)
    all_sends(o, "closed", a)
    o.drain("peer", b)
    os.close(b)


@case
def fd_closed_pipe_and_file(o: Obs) -> None:
    r, w = os.pipe()
    o.call("write", libc.write, w, buf(b"pipe"), 4)
    o.call("close", libc.close, w)
    o.call("write closed pipe", libc.write, w, buf(b"x"), 1)
    o.drain("reader", r)
    os.close(r)
    f = tmpfile()
    o.call("write file", libc.write, f, buf(b"file"), 4)
    o.call("close file", libc.close, f)
    o.call("write closed file", libc.write, f, buf(b"x"), 1)


@case
def close_twice(o: Obs) -> None:
    a, b = spair()
    o.call("close", libc.close, a)
    o.call("close again", libc.close, a)
    o.sync()
    o.call("close a third time", libc.close, a)
    r, w = os.pipe()
    o.call("close pipe", libc.close, w)
    o.sync()
    o.call("close pipe again", libc.close, w)
    o.drain("pipe reader", r)
    os.close(r)
    o.drain("peer", b)
    os.close(b)


@case
def fcntl_after_close(o: Obs) -> None:
    a, b = spair()
    o.call("close", libc.close, a)
    o.call("fcntl F_GETFD", libc.fcntl, a, 1, 0)
    o.call("fcntl F_GETFL", libc.fcntl, b, 3, 0)
    os.close(b)


# ---- fds that are not sockets ----------------------------------------------

@case
def notsock_pipe(o: Obs) -> None:
    r, w = os.pipe()
    all_sends(o, "pipe w", w)
    o.drain("reader", r)
    r2, w2 = os.pipe()
    all_sends(o, "pipe r", r2)  # the read end: EBADF for writes
    os.close(w2)
    os.close(r)


@case
def notsock_file(o: Obs) -> None:
    f = tmpfile()
    all_sends(o, "file rw", tmpfile())
    o.call("write", libc.write, f, buf(b"abc"), 3)
    o.call("writev", libc.writev, f, iovs([b"de", b"f"]), 2)
    o.call("fsync", libc.fsync, f)
    o.note("contents", file_contents(f))
    os.close(f)
    ro = tmpfile(b"ro", os.O_RDONLY)
    all_sends(o, "file ro", ro)
    wo = tmpfile(b"", os.O_WRONLY | os.O_APPEND)
    o.call("append", libc.write, wo, buf(b"ap"), 2)
    o.call("close append", libc.close, wo)


@case
def notsock_opath(o: Obs) -> None:
    fd, path = tempfile.mkstemp()
    os.close(fd)
    p = os.open(path, os.O_PATH)
    all_sends(o, "O_PATH", p)
    os.unlink(path)


@case
def notsock_devnull(o: Obs) -> None:
    all_sends(o, "/dev/null", os.open("/dev/null", os.O_RDWR))
    all_sends(o, "/dev/zero ro", os.open("/dev/zero", os.O_RDONLY))


@case
def notsock_eventfd(o: Obs) -> None:
    e = os.eventfd(0)
    one = (1).to_bytes(8, "little")
    o.call("write 8", libc.write, e, buf(one), 8)
    o.call("write 3", libc.write, e, buf(b"abc"), 3)
    all_sends(o, "eventfd", os.eventfd(0))
    o.note("value", os.eventfd_read(e))
    os.close(e)


@case
def notsock_directory(o: Obs) -> None:
    d = tempfile.mkdtemp()
    all_sends(o, "dir", os.open(d, os.O_RDONLY | os.O_DIRECTORY))
    os.rmdir(d)


@case
def notsock_datagram(o: Obs) -> None:
    a, b = spair(socket.SOCK_DGRAM)
    all_sends(o, "dgram", a)
    o.drain("peer", b)
    a, b = spair(socket.SOCK_SEQPACKET)
    all_sends(o, "seqpacket", a)
    o.drain("peer", b)
    os.close(b)


@case
def notsock_listening(o: Obs) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen()
    fd = s.detach()
    o.call("write", libc.write, fd, buf(b"x"), 1)
    o.call("send", libc.send, fd, buf(b"x"), 1, 0)
    o.call("close", libc.close, fd)


# ---- iovec counts, zero and huge lengths -----------------------------------

@case
def iov_counts(o: Obs) -> None:
    a, b = spair()
    many = iovs([b"i"] * (IOV_MAX + 1))
    o.call("writev IOV_MAX+1", libc.writev, a, many, IOV_MAX + 1)
    o.call("writev IOV_MAX", libc.writev, a, many, IOV_MAX)
    o.call("writev -1", libc.writev, a, many, -1)
    o.call("writev INT_MIN", libc.writev, a, many, -(1 << 31))
    o.call("writev 0", libc.writev, a, many, 0)
    o.call("writev NULL 0", libc.writev, a, None, 0)
    o.call("writev NULL 1", libc.writev, a, None, 1)
    for n in (IOV_MAX + 1, 1 << 20, SIZE_MAX):
        m = msghdr(msg_iov=many, msg_iovlen=n)
        KEEP.append(m)
        o.call(f"sendmsg iovlen {n}", libc.sendmsg, a, ctypes.addressof(m), 0)
    m = msghdr(msg_iov=None, msg_iovlen=2)
    KEEP.append(m)
    o.call("sendmsg NULL iov", libc.sendmsg, a, ctypes.addressof(m), 0)
    o.call("sendmsg NULL msghdr", libc.sendmsg, a, None, 0)
    arr = (iovec * 2)()
    arr[0].iov_base, arr[0].iov_len = buf(b"x"), SSIZE_MAX
    arr[1].iov_base, arr[1].iov_len = buf(b"y"), 2
    o.call("writev sum past SSIZE_MAX", libc.writev, a, ctypes.addressof(arr), 2)
    arr[1].iov_base, arr[1].iov_len = None, 0
    arr[0].iov_len = 1
    o.call("writev NULL zero-length entry", libc.writev, a, ctypes.addressof(arr), 2)
    arr[1].iov_base, arr[1].iov_len = None, 3
    o.call("writev NULL entry", libc.writev, a, ctypes.addressof(arr), 2)
    o.call("close", libc.close, a)
    o.drain("peer", b)
    os.close(b)


@case
def zero_length(o: Obs) -> None:
    a, b = spair()
    r, w = os.pipe()
    f = tmpfile()
    for tag, fd in (("sock", a), ("pipe", w), ("file", f)):
        o.call(f"{tag} write 0", libc.write, fd, buf(b"z"), 0)
        o.call(f"{tag} write NULL 0", libc.write, fd, None, 0)
        o.call(f"{tag} writev empty", libc.writev, fd, iovs([b"", b""]), 2)
        o.call(f"{tag} send 0", libc.send, fd, buf(b"z"), 0, 0)
        m = msghdr(msg_iov=None, msg_iovlen=0)
        KEEP.append(m)
        o.call(f"{tag} sendmsg empty", libc.sendmsg, fd, ctypes.addressof(m), 0)
    o.call("bad pointer, length 0", libc.write, a, guard_page_end(0), 0)
    o.call("shutdown", libc.shutdown, a, socket.SHUT_WR)
    o.call("write 0 after shutdown", libc.write, a, buf(b"z"), 0)
    o.call("send 0 after shutdown", libc.send, a, buf(b"z"), 0, socket.MSG_NOSIGNAL)
    o.drain("peer", b)
    o.drain("reader", r)
    o.note("file", file_contents(f))
    for fd in (a, b, r, w, f):
        os.close(fd)


@case
def huge_lengths(o: Obs) -> None:
    a, b = spair()
    os.set_blocking(a, False)
    r, w = os.pipe()
    os.set_blocking(w, False)
    f = tmpfile()
    # 10 (16) readable bytes before an unmapped page: the kernel copies
    # those and stops there (never memory of ours past the buffer)
    small = guard_page_end(10)
    end = guard_page_end(16)
    for tag, fd in (("sock", a), ("pipe", w), ("file", f)):
        o.call(f"{tag} write SSIZE_MAX", libc.write, fd, small, SSIZE_MAX)
        o.call(f"{tag} write SIZE_MAX", libc.write, fd, small, SIZE_MAX)
        o.call(f"{tag} send SIZE_MAX", libc.send, fd, small, SIZE_MAX, 0)
        # past the end of the mapping and over the byte budget (8M): the kernel
        # copies up to the unmapped page
        o.call(f"{tag} write 16 mapped of 8M", libc.write, fd, end, 8 << 20)
        o.call(f"{tag} send 16 mapped of 8M", libc.send, fd, end, 8 << 20, 0)
    o.drain("peer", b)
    o.drain("reader", r)
    o.note("file", file_contents(f))
    for fd in (a, b, r, w, f):
        os.close(fd)


@case
def over_budget(o: Obs) -> None:
    """Bigger than the byte budget (ESCA_BUDGET=65536 in the test): passed
    through, after the fd's queued bytes."""
    a, b = spair()
    o.call("small", libc.write, a, buf(b"a" * 100), 100)
    o.call("big", libc.write, a, buf(b"b" * 70000), 70000)
    o.call("small again", libc.write, a, buf(b"c" * 100), 100)
    o.drain("peer", b)
    os.close(a)
    os.close(b)


# ---- sendfile ----------------------------------------------------------------

@case
def sendfile_ranges(o: Obs) -> None:
    a, b = spair()
    f = tmpfile(FILE_DATA)
    size = len(FILE_DATA)
    for off, count in (
        (size - 10, 100),   # past the end of the file
        (size, 10),         # at the end
        (size + 100, 10),   # beyond it
        (-1, 10),           # negative
        (-(1 << 62), 10),
        (1 << 62, 10),      # huge
        ((1 << 63) - 1, 1),
        (0, 0),             # count 0
        (size + 5, 0),
        (20, SSIZE_MAX),    # count too big
        (20, SIZE_MAX),
        (7, 9),             # a good one
    ):
        v = ctypes.c_long(off)
        o.call(f"sendfile off={off} count={count}", libc.sendfile, a, f,
               ctypes.addressof(v), count)
        o.note("off after", v.value)
    os.lseek(f, 100, os.SEEK_SET)
    o.call("sendfile NULL offset", libc.sendfile, a, f, None, 8)
    o.note("file position", os.lseek(f, 0, os.SEEK_CUR))
    o.drain("peer", b)
    os.close(f)
    os.close(a)
    os.close(b)


@case
def sendfile_bad_fds(o: Obs) -> None:
    a, b = spair()
    r, w = os.pipe()
    os.write(w, b"pipe data")
    c, d = spair()
    os.write(d, b"sock data")
    wo = tmpfile(FILE_DATA, os.O_WRONLY)
    opath_dir = tempfile.mkdtemp()
    dfd = os.open(opath_dir, os.O_RDONLY | os.O_DIRECTORY)
    for tag, fd in (("pipe", r), ("socket", c), ("write-only file", wo),
                    ("/dev/zero", os.open("/dev/zero", os.O_RDONLY)),
                    ("directory", dfd), ("closed", 4001), ("-1", -1)):
        v = ctypes.c_long(0)
        o.call(f"sendfile from {tag}", libc.sendfile, a, fd, ctypes.addressof(v), 4)
        o.note("off after", v.value)
    f = tmpfile(FILE_DATA)
    ro = tmpfile(b"", os.O_RDONLY)
    for tag, out in (("pipe", w), ("read-only file", ro), ("-1", -1), ("closed", 4002)):
        v = ctypes.c_long(3)
        o.call(f"sendfile to {tag}", libc.sendfile, out, f, ctypes.addressof(v), 4)
        o.note("off after", v.value)
    o.call("write after", libc.write, a, buf(b"after"), 5)
    o.drain("peer", b)
    o.drain("pipe reader", r)
    os.rmdir(opath_dir)


# ---- setsockopt, send flags, shutdown --------------------------------------

@case
def setsockopt_options(o: Obs) -> None:
    c, s = tcp_pair()
    u, v = spair()
    one, big = ctypes.c_int(1), (ctypes.c_char * 64)()
    p1, pb = ctypes.addressof(one), ctypes.addressof(big)
    for tag, fd in (("tcp", c), ("unix", u)):
        for name, level, opt, ptr, ln in (
            ("TCP_CORK", socket.IPPROTO_TCP, TCP_CORK, p1, 4),
            ("TCP_NODELAY", socket.IPPROTO_TCP, TCP_NODELAY, p1, 4),
            ("TCP_CORK len 2", socket.IPPROTO_TCP, TCP_CORK, p1, 2),
            ("TCP_CORK len 0", socket.IPPROTO_TCP, TCP_CORK, p1, 0),
            ("TCP_CORK len 64", socket.IPPROTO_TCP, TCP_CORK, pb, 64),
            ("TCP_CORK len 2^32-1", socket.IPPROTO_TCP, TCP_CORK, pb, (1 << 32) - 1),
            ("TCP_CORK NULL", socket.IPPROTO_TCP, TCP_CORK, None, 4),
            ("TCP 9999", socket.IPPROTO_TCP, 9999, p1, 4),
            ("level 12345", 12345, 1, p1, 4),
            ("level -1", -1, 1, p1, 4),
            ("SOL_SOCKET SO_SNDBUF", socket.SOL_SOCKET, socket.SO_SNDBUF, p1, 4),
            ("SOL_SOCKET 9999", socket.SOL_SOCKET, 9999, p1, 4),
        ):
            o.call(f"{tag} {name}", libc.setsockopt, fd, level, opt, ptr, ln)
    f = tmpfile()
    o.call("file TCP_CORK", libc.setsockopt, f, socket.IPPROTO_TCP, TCP_CORK, p1, 4)
    r, w = os.pipe()
    o.call("pipe TCP_NODELAY", libc.setsockopt, w, socket.IPPROTO_TCP, TCP_NODELAY, p1, 4)
    o.call("write after", libc.write, c, buf(b"ok"), 2)
    o.drain("tcp peer", s)
    for fd in (c, s, u, v, f, r, w):
        os.close(fd)


@case
def send_flags(o: Obs) -> None:
    c, s = tcp_pair()
    u, v = spair()
    for tag, fd in (("tcp", c), ("unix", u)):
        for name, fl in (
            ("MSG_OOB", socket.MSG_OOB),
            ("MSG_EOR", socket.MSG_EOR),
            ("MSG_CONFIRM", socket.MSG_CONFIRM),
            ("MSG_TRUNC", socket.MSG_TRUNC),
            ("MSG_PEEK", socket.MSG_PEEK),
            ("MSG_ERRQUEUE", socket.MSG_ERRQUEUE),
            ("MSG_ZEROCOPY", 0x4000000),
            ("MSG_FASTOPEN", 0x20000000),
            ("0x7fffffff", 0x7FFFFFFF),
            ("-1", -1),
            ("MSG_MORE|MSG_NOSIGNAL", socket.MSG_MORE | socket.MSG_NOSIGNAL),
            ("MSG_DONTWAIT", socket.MSG_DONTWAIT),
        ):
            o.call(f"{tag} send {name}", libc.send, fd, buf(b"F"), 1, fl)
            o.call(f"{tag} sendto {name}", libc.sendto, fd, buf(b"G"), 1, fl, None, 0)
            m = msghdr(msg_iov=iovs([b"H"]), msg_iovlen=1)
            KEEP.append(m)
            o.call(f"{tag} sendmsg {name}", libc.sendmsg, fd, ctypes.addressof(m), fl)
    addr = ctypes.create_string_buffer(16)
    o.call("sendto with an address", libc.sendto, u, buf(b"A"), 1, 0, addr, 16)
    m = msghdr(msg_iov=iovs([b"C"]), msg_iovlen=1, msg_control=buf(b"\0" * 8),
               msg_controllen=8)
    KEEP.append(m)
    o.call("sendmsg bad control", libc.sendmsg, u, ctypes.addressof(m), 0)
    o.drain("tcp peer", s)
    o.drain("unix peer", v)
    for fd in (c, s, u, v):
        os.close(fd)


@case
def shutdown_how(o: Obs) -> None:
    a, b = spair()
    c, s = tcp_pair()
    for tag, fd in (("unix", a), ("tcp", c)):
        for how in (3, -1, 100, (1 << 31) - 1, -(1 << 31)):
            o.call(f"{tag} shutdown how={how}", libc.shutdown, fd, how)
        o.call(f"{tag} write", libc.write, fd, buf(b"ok"), 2)
        o.call(f"{tag} shutdown SHUT_WR", libc.shutdown, fd, socket.SHUT_WR)
        o.call(f"{tag} shutdown SHUT_WR again", libc.shutdown, fd, socket.SHUT_WR)
        o.call(f"{tag} shutdown SHUT_RDWR", libc.shutdown, fd, socket.SHUT_RDWR)
    o.drain("unix peer", b)
    o.drain("tcp peer", s)
    f = tmpfile()
    o.call("shutdown file", libc.shutdown, f, socket.SHUT_WR)
    for fd in (a, b, c, s, f):
        os.close(fd)


# ---- errors known only when the batch runs (DESIGN.md, "Contract: errors") ---------------

@case
def deferred_error_shutdown_unconnected(o: Obs) -> None:
    """shutdown of a TCP socket never connected: ENOTCONN.  Deferred, it says
    0 and the error comes back on the next call on that fd."""
    fd = socket.socket(socket.AF_INET, socket.SOCK_STREAM).detach()
    o.call("shutdown", libc.shutdown, fd, socket.SHUT_WR)
    o.sync()
    o.call("write", libc.write, fd, buf(b"x"), 1)
    o.call("write again", libc.write, fd, buf(b"x"), 1)
    o.call("close", libc.close, fd)


@case
def deferred_error_peer_closed(o: Obs) -> None:
    """A send to a peer that is gone: EPIPE."""
    a, b = spair()
    os.close(b)
    o.sync()  # the close of b is done
    o.call("send", libc.send, a, buf(b"x"), 1, socket.MSG_NOSIGNAL)
    o.sync()
    o.call("send again", libc.send, a, buf(b"x"), 1, socket.MSG_NOSIGNAL)
    o.sync()
    o.call("send a third time", libc.send, a, buf(b"x"), 1, socket.MSG_NOSIGNAL)
    o.call("close", libc.close, a)


FAULTS: dict[str, Callable[[int], int]] = {
    # fd -> the call with an invalid (non-NULL, unmapped) pointer
    "write": lambda fd: libc.write(fd, guard_page_end(0), 8),
    "write_past_end": lambda fd: libc.write(fd, guard_page_end(4), 100),
    "send": lambda fd: libc.send(fd, guard_page_end(0), 8, 0),
    "writev_iov": lambda fd: libc.writev(fd, guard_page_end(0), 2),
    "writev_base": lambda fd: libc.writev(fd, iov_at(guard_page_end(0), 8), 1),
    "sendmsg_msghdr": lambda fd: libc.sendmsg(fd, guard_page_end(0), 0),
    "sendfile_offset": lambda fd: libc.sendfile(fd, tmpfile(FILE_DATA), guard_page_end(0), 4),
    "setsockopt_optval": lambda fd: libc.setsockopt(
        fd, socket.IPPROTO_TCP, TCP_CORK, guard_page_end(0), 4),
}


def iov_at(base: int, n: int) -> int:
    arr = (iovec * 1)()
    arr[0].iov_base, arr[0].iov_len = base, n
    KEEP.append(arr)
    return ctypes.addressof(arr)


def fault(name: str, target: str) -> None:
    """One call with an invalid pointer on a fd of kind target; prints
    [result, errno] if the process survives it."""
    if target == "tcp":
        fd, peer = tcp_pair()
    elif target == "unix":
        fd, peer = spair()
    elif target == "pipe":
        peer, fd = os.pipe()
    else:
        fd, peer = os.open("/dev/null", os.O_WRONLY), -1
    KEEP.append(peer)  # open until the end: the call's fd stays connected
    ctypes.set_errno(0)
    r = FAULTS[name](fd)
    e = ctypes.get_errno() if r < 0 else 0
    print(json.dumps([r, errno.errorcode.get(e, "") if e else ""]), flush=True)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--list"]:
        print("\n".join(CASES))
        return 0
    if argv[:1] == ["--fault"]:
        fault(argv[1], argv[2])
        return 0
    out = {}
    for name in argv or list(CASES):
        o = Obs()
        CASES[name](o)
        o.sync()
        out[name] = o.out
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
