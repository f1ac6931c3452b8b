"""Found by the threaded fuzz (test_fuzz_threads.py[sigalrm], uring: one hang
in ~50 examples once the cross-thread wait existed): threads that end while a
SIGALRM handler writes to a non-blocking self-pipe socket that another thread
drains (progs/found_thread_end.c).  Plain: every record reaches the peer,
every "S" the handler wrote arrives, in well under a second.

Two defects, seen with gdb on the hung program:
- a handler running on an ending thread after the library's end-of-thread
  hook (glibc blocks signals only at the very end of a thread), or on an
  ending thread that had made no interposed call (the odd workers), made the
  thread a new table (calloc in a handler), queued its "S" there and died:
  nobody flushed it, and every later write to that socket waited 2 s for the
  dead owner (fd_wait_others), re-entered by the next alarm: a hang;
- a handler's write on the drainer thread, to the socket whose bytes another
  thread had queued, waited for them (fd_wait_others) while they were parked
  until the drainer itself read: a hang.  A non-blocking socket that is full
  now answers EAGAIN at once, as the kernel does.

Fails before the fix (uring: killed at the timeout; sequential: likewise),
passes after."""

from __future__ import annotations

from pathlib import Path

import pytest

from .trust import assert_deferred, modes, prog, run_on_sockets

THREADS = 300


@pytest.mark.parametrize("mode", modes())
def test_found_threads_end_while_a_handler_writes(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("found_thread_end", tmp_path_factory)
    r = run_on_sockets(mode, [exe, str(THREADS)], tmp_path, timeout=40)
    assert r.rc == 0, r
    assert r.peer == b"".join(b"%08d\n" % i for i in range(0, THREADS, 2)), r
    words = r.err.split()
    assert words[:2] == [b"threads", str(THREADS).encode()], r
    fired, got = int(words[3]), int(words[5])
    assert fired == got and fired > 10, r  # the handler ran, all its bytes arrived
    assert_deferred(mode, r.stats_path, write=THREADS // 4)
