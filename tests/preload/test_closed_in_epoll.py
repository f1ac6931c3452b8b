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
under both executors).  Where a dup keeps the open file, Linux keeps the
registration and reports the closed number: so does the library (dup).
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
CASES = ["parked", "queued", "held", "level", "waiter", "idle", "dup"]


def run(mode: str, case: str) -> dict:
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if mode != "plain":
        env.update(LD_PRELOAD=str(LIB), ESCA_EXECUTOR=mode, ESCA_QUIET="1",
                   ESCA_BUDGET=str(64 << 20))
        if case == "waiter":
            env["ESCA_FLUSH_US"] = "1000000"  # no timer shot in its 0.3 s
    p = subprocess.run([sys.executable, str(PROGS / "closed_in_epoll.py"), case], env=env,
                       capture_output=True, text=True, timeout=30, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout)


@functools.cache
def plain(case: str) -> dict:
    return run("plain", case)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", executor_params())
def test_closed_socket_leaves_epoll_set(mode: str, case: str) -> None:
    want, r = plain(case), run(mode, case)
    # the oracle: only a dup keeps the closed number reported
    assert bool(want["events"]) == (case == "dup"), want
    assert bool(r["events"]) == bool(want["events"]), (r, want)
    if case == "dup":
        assert {d for d, _ in r["events"]} == {r["fd"]}, r
    # every byte the send calls returned reaches the client, then the end
    assert r["end"] == want["end"], (r, want)
    if r["end"] == "eof":
        assert r["got"] == r["n"], r
