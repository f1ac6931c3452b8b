"""Found by session 9's audit of the reads (its note, "not fixed"): a
process writes one end of a socketpair it made and reads the other end
without waiting (progs/found_socketpair.c, whose docstring says each case).

Plain Linux wrote the bytes at the call: a non-blocking read, a
MSG_DONTWAIT recv, a MSG_PEEK and FIONREAD of the other end find them.
Under uring and sequential the write was deferred and those said
EAGAIN (FIONREAD 0) until the next wait or the timer's shot; with the
other end in an epoll set, lever reads answered EAGAIN from its note of an
empty read even once the bytes were there.  Now socketpair() tells each end
of the other (sync.c): a read of one pushes the other's entries in this
thread's table to the kernel (never waiting for a parked one: case full),
and lever reads never answers either end.  Every case but recv and full
failed under both executors with the libesca.so of 3a7b16c."""

from __future__ import annotations

from pathlib import Path

import pytest

from .trust import assert_deferred, modes, prog, same_as_plain

CASES = ["read", "recv", "peek", "fionread", "dup", "reverse", "lever", "full"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", modes())
def test_found_socketpair_read_sees_own_write(
    mode: str, case: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("found_socketpair", tmp_path_factory)
    r = same_as_plain(mode, [exe, case], tmp_path, timeout=20)
    if r is not None:
        assert_deferred(mode, r.stats_path, **({"send": 1} if case == "recv" else {"write": 1}))
