"""A socket the program closed must leave its epoll sets at the close, as
on Linux, also where the library still holds the kernel's fd open for the
socket's queued or parked bytes (progs/closed_in_epoll.py; plain Linux is
the oracle).

Before, such a close (queued behind bytes parked on a client that does
not read, held for another thread's, or queued while another thread waits
on the set) left the socket registered until it ran: the program's waits
reported EPOLLOUT as the client read, or EPOLLIN as it wrote, for an fd the
program had closed, with the event data of a connection it had freed
(parked, queued, held, level, waiter: every one of them got such events
under both executors).  Where a dup keeps the open file, or a forked child closes
its copy, Linux keeps the registration and reports the closed number: so
does the library (dup, fork; f3bd5f6 took the parent's registration away at
the child's close).  A close that runs in the flush before the next wait
costs no epoll_ctl (idle, sendclose; f3bd5f6 made one for a close queued
behind a send).  A thread that ends before its next wait takes its closed
sockets out as it ends (threadend: 3a36e9b left them to the heir, and the
main thread's waits reported them under uring).
The client still gets every byte the send calls returned.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import executor_params

import pyesca

PROGS = Path(__file__).parent / "progs"
LIB = Path(os.environ.get("ESCA_TEST_LIB") or Path(pyesca.__file__).parent / "libesca.so")
CASES = ["parked", "queued", "held", "level", "waiter", "threadend", "idle", "sendclose",
         "dup", "fork"]
# where the oracle's set still reports the closed number (its file lives on)
REPORTED = {"dup", "fork"}
# where no wait could see the socket before its close ran: no epoll_ctl more
NO_SYSCALL = {"idle", "sendclose", "fork"}


def run(mode: str, case: str, tmp: Path | None = None) -> dict:
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if mode != "plain":
        env.update(LD_PRELOAD=str(LIB), ESCA_EXECUTOR=mode, ESCA_QUIET="1",
                   ESCA_BUDGET=str(64 << 20))
        if tmp is not None:
            env["ESCA_STATS"] = str(tmp / "stats.json")
        if case == "waiter":
            env["ESCA_FLUSH_US"] = "1000000"  # no timer shot in its 0.3 s
    p = subprocess.run([sys.executable, str(PROGS / "closed_in_epoll.py"), case], env=env,
                       capture_output=True, text=True, timeout=30, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(p.stdout)
    if tmp is not None:
        r["stats"] = json.loads((tmp / "stats.json").read_text())
    return r


@functools.cache
def plain(case: str) -> dict:
    return run("plain", case)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", executor_params())
def test_closed_socket_leaves_epoll_set(mode: str, case: str, tmp_path: Path) -> None:
    want, r = plain(case), run(mode, case, tmp_path)
    # the oracle: only a file still open elsewhere keeps its number reported
    assert bool(want["events"]) == (case in REPORTED), want
    assert bool(r["events"]) == bool(want["events"]), (r, want)
    if case in REPORTED:
        assert {d for d, _ in r["events"]} == {r["fd"]}, r
    if case in NO_SYSCALL:
        assert r["stats"]["closes_out_of_epoll"] == 0, r["stats"]
    elif case not in ("dup", "threadend"):  # (threadend: the worker may step aside)
        assert r["stats"]["closes_out_of_epoll"] >= 1, r["stats"]
    # every byte the send calls returned reaches the client, then the end
    assert r["end"] == want["end"], (r, want)
    if r["end"] == "eof":
        assert r["got"] == r["n"], r
