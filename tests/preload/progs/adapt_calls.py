"""tests/reliability/progs/fuzz_calls.py's call sequence (JSON on stdin, its
JSON out) with an event-loop wait (timeout 0, through libc: the interposer)
before every third libc call it makes: the points where lever adapt may step
aside or back (test_adapt.py forces it to at every one).  argv[1]: the wait,
epoll (epoll_wait, the default), poll, ppoll, select or pselect."""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "reliability", "progs")
)
import fuzz_calls  # noqa: E402

real = fuzz_calls.libc
EPFD = real.epoll_create1(0)
EVS = ctypes.create_string_buffer(12 * 8)
ZERO = ctypes.create_string_buffer(16)  # a struct timeval / timespec of 0
WAITS = {
    "epoll": lambda: real.epoll_wait(EPFD, EVS, 8, 0),
    "poll": lambda: real.poll(None, 0, 0),
    "ppoll": lambda: real.ppoll(None, 0, ZERO, None),
    "select": lambda: real.select(0, None, None, None, ZERO),
    "pselect": lambda: real.pselect(0, None, None, None, ZERO, None),
}
WAIT = WAITS[sys.argv[1] if len(sys.argv) > 1 else "epoll"]


class Waiting:
    """fuzz_calls' libc, a wait before every third call."""

    n = 0

    def __getattr__(self, name: str) -> Any:
        f = getattr(real, name)

        def call(*args: Any) -> Any:
            Waiting.n += 1
            if Waiting.n % 3 == 0:
                e = ctypes.get_errno()
                assert WAIT() == 0
                ctypes.set_errno(e)
            return f(*args)

        return call


fuzz_calls.libc = Waiting()
sys.exit(fuzz_calls.main())
