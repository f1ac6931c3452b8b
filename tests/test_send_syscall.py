"""A data op of one iovec run as a plain system call is a `sendto` without an
address, as glibc's `send` makes, not a `sendmsg` of one iovec, which costs
the kernel ~115 ns more (the msghdr and the iovec copied in: DESIGN.md,
"Known traps"): under `sequential` every op, under `uring` a flush of one
call (`uring_direct.c`).  A `sendmsg` of two buffers is copied into the
table as one, so it goes as one `sendto` too.  The bytes are compared with
the plain run's."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from conftest import executor_skip_reason

PROG = r"""
import socket, sys
import pyesca
a, b = socket.socketpair()
if sys.argv[1] == "plain":
    a.send(b"one-iovec ")
    a.sendmsg([b"two ", b"iovecs"])
else:
    with pyesca.batch(sys.argv[1]) as bt:
        p1 = bt.send(a, b"one-iovec ")
    with pyesca.batch(sys.argv[1]) as bt:
        p2 = bt.sendmsg(a, [b"two ", b"iovecs"])
    assert (p1.result(), p2.result()) == (10, 10)
a.close()
got = b""
while chunk := b.recv(100):
    got += chunk
sys.stdout.write(got.decode())
"""


def traced(mode: str) -> tuple[str, list[str]]:
    p = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=sendto,sendmsg", "-o", "/dev/stderr",
         sys.executable, "-c", PROG, mode],
        capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    calls = [ln.split("(", 1)[0].split()[-1] for ln in p.stderr.splitlines()
             if "one-iovec" in ln or "iovecs" in ln]
    return p.stdout, calls


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
@pytest.mark.parametrize("executor", ["sequential", "uring"])
def test_one_iovec_is_a_sendto(executor: str) -> None:
    reason = executor_skip_reason(executor)
    if reason:
        pytest.skip(reason)
    plain_out, plain_calls = traced("plain")
    assert plain_calls == ["sendto", "sendmsg"]
    out, calls = traced(executor)
    assert out == plain_out == "one-iovec two iovecs"
    assert calls == ["sendto", "sendto"]
