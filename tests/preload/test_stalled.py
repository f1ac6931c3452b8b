"""Issue 13, defect 1: a client that never reads holds up no flush trigger.

A server (progs/stalled.c) writes 3 MiB to client A, which never reads
(deferred: parked on A's full socket), then client B's request runs one flush
trigger and must be answered within 100 ms.  Plain Linux is the oracle.

On main (before issue 13) these failed under `uring` (B unanswered, the
server stuck waiting for A): dup2, fcntl, lseek, fsync (a sync of another fd
waited for every entry), fork, exit (the process never ended).  These passed
on main too, because their flush reaps and never waited: wait, timer,
budget, capacity, explicit; and open, which flushes nothing since the
deferral scope change (files are not deferred).  Still failing (strict
xfail): read (a read that may block) and sleep, whose waiting flush is in
wait.c/read.c; exec, whose last drain gives up only after 1 s without
progress (DESIGN.md, "Contract: parked sends").

16 MiB, as issue 13 asks, is not used: one deferred 16 MiB write (ESCA_BUDGET
raised to 32 MiB) stalls even the event-loop wait, on main as here: a defect
of its own, found here and not fixed.  `sequential` cannot park:
the 16 MiB write blocks the server (README, Limits).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import compile_c, executor_params

import pyesca

# Unfinished (session of 2026-12-02): 3 MiB fit TCP loopback's autotuned send
# buffer, so nothing parks and every case passes, the xfails included; and a
# deferred 16 MiB write stalls even the event-loop wait (main too).  Until the
# server makes A's socket's buffers small (SO_SNDBUF) and the 16 MiB stall is
# understood, this suite proves nothing: skipped, not counted.
pytestmark = pytest.mark.skip(reason="unfinished: nothing parks with 3 MiB on TCP loopback")

PROGS = Path(__file__).parent / "progs"
LIB = Path(pyesca.__file__).parent / "libesca.so"

TRIGGERS = ["wait", "read", "open", "fork", "exec", "exit", "sleep", "dup2", "fcntl",
            "lseek", "fsync", "timer", "budget", "capacity", "explicit"]
NOT_YET = {
    "read": "a read that may block still waits for every parked send (read.c: issue 13, "
            "another engineer's files)",
    "sleep": "sleep still waits for every parked send (wait.c: issue 13, another "
             "engineer's files)",
    "exec": "exec's last drain waits 1 s without progress before it gives up (DESIGN.md, "
            "'Contract: parked sends'); no hand-over to a helper yet",
}
SEQUENTIAL = ("README, Limits: sequential cannot park; the 3 MiB write to the client that "
              "never reads blocks the server")


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_c(PROGS / "stalled.c", tmp_path_factory.mktemp("stalled"), "-ldl")


def cases() -> list:
    out = []
    for ex in executor_params(plain=True):
        (mode,) = ex.values
        for t in TRIGGERS:
            marks = list(ex.marks)
            if mode == "sequential":
                marks.append(pytest.mark.xfail(strict=True, reason=SEQUENTIAL))
            elif mode != "plain" and t in NOT_YET:
                marks.append(pytest.mark.xfail(strict=True, reason=NOT_YET[t]))
            out.append(pytest.param(mode, t, marks=marks, id=f"{mode}-{t}"))
    return out


@pytest.mark.parametrize(("mode", "trigger"), cases())
def test_stalled_client_holds_up_no_trigger(prog: Path, mode: str, trigger: str) -> None:
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if mode != "plain":
        env.update(LD_PRELOAD=str(LIB), ESCA_EXECUTOR=mode, ESCA_QUIET="1")
    p = subprocess.Popen([str(prog), trigger], env=env, stdout=subprocess.PIPE)
    a = b = None
    try:
        assert p.stdout is not None
        port = int(p.stdout.readline())
        a = socket.create_connection(("127.0.0.1", port))
        a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        a.sendall(b"A\n")
        time.sleep(0.3)  # the 3 MiB go out and park on A's full socket
        b = socket.create_connection(("127.0.0.1", port))
        b.settimeout(5)
        t0 = time.monotonic()
        b.sendall(b"B\n")
        try:
            got = b.recv(16)
        except TimeoutError:
            got = b"(no answer in 5 s)"
        ms = (time.monotonic() - t0) * 1000
        assert got == b"ok\n", (mode, trigger, got)
        assert ms < 100, f"{trigger}: answered after {ms:.0f} ms"
        if trigger == "exit":
            # Linux's exit does not wait for A to read; the last drain gives
            # up after 1 s without progress
            assert p.wait(timeout=3) == 0
    finally:
        for s in (a, b):
            if s is not None:
                s.close()
        if p.poll() is None:
            p.kill()
        p.wait()
