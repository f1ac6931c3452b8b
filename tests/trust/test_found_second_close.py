"""Found reading preload/fdmap.c (session 8's note), not one of issue 12's
defects: a second close of a number whose first close is still queued in
this thread's own table, behind a send parked on a full socket
(progs/found_second_close.c).

Plain: the number is free after the first close; close(fd) answers
-1/EBADF and close_range(fd, fd, 0) answers 0, each in microseconds.  Under
uring the library answered the same, but only after 20 ms each time:
fd_qclose_stands polled for the close's completion, which another thread
can make happen but, for a close in the caller's own table, only the
caller's own next flush (DEFER_TASKRUN; lkm likewise).  Now the caller's
own table is reaped and the answer is final (ESCA_CAP_OWN_PROGRESS).
sequential completes the writes to the full socket in place and blocks
(README, Limits; pinned by test_found_parked's strict xfail): skipped here."""

from __future__ import annotations

from pathlib import Path

import pytest

from .trust import assert_deferred, modes, prog, run

# plain takes microseconds; the defect took 20 ms each time
BOUND_MS = 5


@pytest.mark.parametrize("mode", modes())
def test_found_second_close_of_a_number_closing_in_this_threads_table(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("found_second_close", tmp_path_factory)
    r = run(mode, [exe], tmp_path, timeout=40)
    assert r.rc == 0, r
    lines = r.lines()
    assert lines[:2] == ["close again: EBADF", "close_range again: 0"], r
    assert lines[4:] == ["peer got the bytes told: yes, EOF"], r
    least = {w[1]: int(w[3]) for w in (ln.split() for ln in lines[2:4])}
    assert set(least) == {"close", "close_range"}, r
    assert least["close"] < BOUND_MS and least["close_range"] < BOUND_MS, (least, r)
    assert_deferred(mode, r.stats_path, write=1, close=1)
