"""A blocking write the program makes goes whole, as on Linux, also while
the library's timer signal fires (progs/whole_writes.py; plain Linux is the
oracle).

The timer signal (it moves parked sends, DESIGN.md "Flush triggers") ends a
blocking pipe or socket write the kernel had copied part of with that part,
SA_RESTART or not; plainly there is no signal and the call blocks until
every byte went.  Before, under `sequential` (whose parked sends keep the
timer firing): os.write and os.writev of 2 MiB to a slow pipe returned a
short count, socket.send one on a slow socketpair, and print, whose
TextIOWrapper does not finish a short write (cpython gh-85393), lost the
rest of its line for good.  A handler of the program's still ends such a
write short, as it does plainly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import executor_params

import pyesca

PROGS = Path(__file__).parent / "progs"
LIB = Path(os.environ.get("ESCA_TEST_LIB") or Path(pyesca.__file__).parent / "libesca.so")
N = 2 << 20


def run(mode: str, case: str, status: int = 0) -> tuple[dict, bytes]:
    """The program's JSON, and what its stdout carried (read slowly: 64 KiB
    every 2 ms, so that its writes block; cases restart and reuse: 2 s and
    1 s without reading after the first 512 KiB)."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if mode != "plain":
        env.update(LD_PRELOAD=str(LIB), ESCA_EXECUTOR=mode, ESCA_QUIET="1",
                   ESCA_BUDGET=str(32 << 20))
    p = subprocess.Popen([sys.executable, str(PROGS / "whole_writes.py"), case], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    time.sleep(0.3)  # the pipe fills: the write blocks
    got = bytearray()
    stopped = case not in ("restart", "reuse")
    while True:
        d = p.stdout.read1(65536)
        if not d:
            break
        got += d
        if case == "gone" and len(got) >= 512 << 10:
            p.stdout.close()  # the reader leaves: the writer's SIGPIPE
            break
        time.sleep(0.002)
        if not stopped and len(got) >= 512 << 10:
            stopped = True
            time.sleep(2 if case == "restart" else 1)
    err = p.stderr.read().decode()
    assert p.wait(timeout=30) == status, (p.returncode, err)
    return (json.loads(err.strip().splitlines()[-1]) if not status else {}), bytes(got)


@pytest.mark.parametrize("case", ["print", "write", "writev", "send"])
@pytest.mark.parametrize("mode", executor_params(plain=True))
def test_blocking_write_goes_whole(mode: str, case: str) -> None:
    r, out = run(mode, case)
    assert r["ret"] == N, r
    if case == "send":
        assert r["got"] == N and r["ok"], r
    else:
        assert len(out) == N, len(out)
        assert out == (bytes(range(97, 123)) * (N // 26 + 1))[:N]


@pytest.mark.parametrize("mode", executor_params(plain=True))
def test_the_programs_signal_still_ends_it_short(mode: str) -> None:
    """A handler of the program's that runs in the write ends it with the
    bytes that went, as Linux's: the library finishes only what its own
    signal cut."""
    r, out = run(mode, "alarm")
    assert 0 < r["ret"] < N, r
    assert len(out) == r["ret"], (len(out), r)


@pytest.mark.parametrize("mode", executor_params(plain=True))
def test_a_restarting_handler_still_ends_it_short(mode: str) -> None:
    """An SA_RESTART handler of the program's, run while the reader has
    stopped: Linux's write, which had copied some, returns at it; the
    library's further write, blocked with nothing copied, must not be
    restarted (5260a2b's waited for the reader, 2 s)."""
    r, out = run(mode, "restart")
    assert 0 < r["ret"] < N and r["secs"] < 1.5, r
    assert len(out) == r["ret"], (len(out), r)


@pytest.mark.parametrize("case", ["shutdown", "sfpipe"])
@pytest.mark.parametrize("mode", executor_params(plain=True))
def test_short_for_a_reason_of_its_own(mode: str, case: str) -> None:
    """A write short for a reason of the kernel's stays as plainly: a send
    on a socket shut down meanwhile (what went, no SIGPIPE: 5260a2b's
    further send raised it), a sendfile into a pipe (one pipe's worth:
    5260a2b's went on to the whole count).  (A regular file's write cut at
    RLIMIT_FSIZE, which 5260a2b went on with into SIGXFSZ, the review's C
    program showed; this program's timer did not fire inside such a write.)"""
    r, out = run(mode, case)
    if case == "shutdown":
        assert isinstance(r["ret"], int) and 0 < r["ret"] < 8 << 20, r
    else:
        assert 0 < r["ret"] < 4 << 20 and len(out) == 65536 + r["ret"], (r, len(out))


@pytest.mark.parametrize("mode", executor_params(plain=True))
def test_the_rest_goes_to_the_same_pipe(mode: str) -> None:
    """Another thread closes the number mid-write and a new file takes it:
    Linux's write holds its pipe; the library's further writes use a dup
    of its own (75b89ac's went by number: 4,521,984 bytes into the new
    file, the review's program)."""
    r, out = run(mode, "reuse")
    assert r["file"] == 0, r
    assert r["ret"] == len(out) == 8 << 20, (r, len(out))


@pytest.mark.parametrize("mode", executor_params(plain=True))
def test_a_pipe_whose_reader_left_raises_sigpipe(mode: str) -> None:
    """The reader closes its end mid-write: Linux's pipe write raises
    SIGPIPE even after it moved bytes; so must the library's finishing
    (75b89ac's ended quietly at ppoll's POLLERR, exit 0)."""
    run(mode, "gone", status=-13)
