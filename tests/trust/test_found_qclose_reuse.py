"""Found by the threaded fuzz (test_fuzz_threads.py[uring-sigalrm], with a
longer time bound: 1 run in 4 of 300 examples): "close(4) Bad file
descriptor" for a number the program had just been given, then that stream
without its EOF.

A deferred close marks its number closing (FU_QCLOSE) until the table that
holds it collects the completion.  The kernel frees the number when it runs
the close, a moment earlier: another thread's socketpair can get it in
between, and the library then refused that thread's close of its own new
socket (EBADF: "a number the program closed whose close is still pending"),
skipped it in a close_range, or held a dup2 onto it for 2 s.  Now a closing
number is checked first: the owner's table is reaped (nudged with the timer
signal) and the kernel answers once the close is done
(preload/fdmap.c, fd_qclose_stands).

progs/found_qclose_reuse.c: one thread closes sockets (deferred), another
opens and closes its own.  Before the fix, under uring: 40-60% of the second
thread's closes failed in 2 s (3 of 3 runs); after, none."""

from __future__ import annotations

from pathlib import Path

import pytest

from .trust import assert_deferred, modes, prog, run


@pytest.mark.parametrize("mode", modes())
def test_found_close_of_a_number_a_deferred_close_just_freed(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("found_qclose_reuse", tmp_path_factory)
    r = run(mode, [exe, "2"], tmp_path, timeout=30)
    words = r.text().split()
    assert r.rc == 0 and words[:1] == ["rounds"] and words[2:4] == ["bad", "0"], r
    assert int(words[1]) > 100, r  # the reuser ran
    assert_deferred(mode, r.stats_path, close=100)
