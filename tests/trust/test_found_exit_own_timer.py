"""Found chasing a hang of `d05_signal_write/full` in the QEMU guest (seen
once, session 8; not one of issue 12's defects): at exit, while the exiting
thread waits for the other threads' tables (threads_drain_others sets
lib_draining), its *own* timer signal ran the handler's end-of-process
flush, which waits for every entry, parked sends included, on the exiting
thread itself: for a send parked on its own full non-blocking self-pipe,
which nobody will drain any more (progs/found_exit_own_timer.c).

Plain: the return from main ends the process at once (the other thread
blocked in a write to a peer that never reads).  Under esca the exit waits
a bounded time for the other thread's bytes and the exiting thread's own
(1 s without progress each: DESIGN.md, "Contract: parked sends" and
"Contract: threads and fork"), never for good."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .trust import assert_deferred, modes, prog, run

# each of the exit's two bounded waits gives up after 1 s without progress
BOUND_S = 7.0


@pytest.mark.parametrize("mode", modes())
def test_found_exit_waits_for_its_own_parked_send_only_bounded(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("found_exit_own_timer", tmp_path_factory)
    t0 = time.monotonic()
    r = run(mode, [exe], tmp_path, timeout=30)
    took = time.monotonic() - t0
    # the program's alarm(8) kills a hang with SIGALRM (rc -14)
    assert r.rc == 0, r
    assert r.lines() == ["self-pipe full: Resource temporarily unavailable"], r
    assert took < BOUND_S, (took, r)
    assert_deferred(mode, r.stats_path, write=2)
