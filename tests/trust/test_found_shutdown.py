"""Found while rewriting tests/trust (not one of issue 12's defects): a
worker's queued write is lost when another thread shuts the socket down
(progs/found_shutdown.c).  Plain, the peer reads the worker's "A", the I/O
thread's "B", then EOF.  Under the library the I/O thread's flush runs its
`shutdown(SHUT_WR)` while the worker's "A" is still in the worker's table;
"A" then fails with EPIPE, counted in the stats, never seen by the program.
Now a data call or a shutdown on a socket whose bytes another thread has
queued waits for them and goes to the kernel (DESIGN.md, "Contract: order"):
the worker's write is deferred, the I/O thread's write and shutdown are
passed after it."""

from __future__ import annotations

from pathlib import Path

import pytest

from .trust import assert_deferred, modes, prog, run_on_sockets

@pytest.mark.parametrize("mode", modes())
def test_found_shutdown_keeps_another_threads_queued_write(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("found_shutdown", tmp_path_factory)
    # the watchdog's bound far away: only the threads' own flushes move the
    # bytes, so the outcome does not depend on timing
    r = run_on_sockets(mode, [exe], tmp_path, env={"ESCA_FLUSH_US": "20000000"})
    assert r.rc == 0, r
    assert r.peer == b"AB", r
    assert_deferred(mode, r.stats_path, write=1)
