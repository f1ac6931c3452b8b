"""Found by the threaded fuzz (test_fuzz_threads.py[sigalrm], uring: one hang
in ~230 examples of a 400-example run): a signal handler's write is the
first interposed call of a thread that is inside malloc
(progs/found_handler_alloc.c: each of N threads loops on malloc/free until
its SIGUSR1 handler has written "S" to a non-blocking socket a drainer
reads, then writes one record to the peer).  Plain: done in well under a
second, every record and every "S" arrives.

With gdb on the hung program: the handler's write made the thread's table
(tstate_create: calloc) and started the watchdog thread (pthread_create:
calloc of the new thread's TLS), each blocked on the arena lock the
interrupted malloc held, for good.  A thread's state, its table and the
executor's state are now mmap'd, liburing's probe goes into the caller's
buffer, and the watchdog is started outside a handler (thread.c,
watchdog_ensure; signals.c, tls_in_handler).

Fails before the fix (uring and sequential: killed at the timeout, the
first thread hung), passes after."""

from __future__ import annotations

from pathlib import Path

import pytest

from .trust import assert_deferred, modes, prog, run_on_sockets

THREADS = 200


@pytest.mark.parametrize("mode", modes())
def test_found_handler_write_is_a_threads_first_call_inside_malloc(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("found_handler_alloc", tmp_path_factory)
    r = run_on_sockets(mode, [exe, str(THREADS)], tmp_path, timeout=30)
    assert r.rc == 0, r
    assert r.peer == b"".join(b"%08d\n" % i for i in range(THREADS)), r
    assert r.err.split() == [b"threads", b"%d" % THREADS, b"fired", b"%d" % THREADS,
                             b"got", b"%d" % THREADS], r
    # the handlers' writes and the records were deferred
    assert_deferred(mode, r.stats_path, write=THREADS)
