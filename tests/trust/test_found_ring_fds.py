"""Found by session 10's audit of threads (progs/found_ring_fds.c): under
uring each thread's ring took one of the program's file descriptors, so a
thread-per-connection program got EMFILE at far fewer connections than with
plain Linux.  The ring's fd is now registered and closed (uring_setup.c,
ring_fd_close).  The pairs made before EMFILE and the bytes read must be
plain's; uring made 41 of 62 pairs with 31044a2's library.  The last thread's
ring, which finds no number left, is done without in silence (a37eb61 said
"uring executor unavailable (Too many open files)" on stderr)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ring_keeps_its_fd

from .trust import modes, prog, same_as_plain


# before Linux 6.3 the ring keeps its fd: README, Limits
OLD = {"uring": "the ring keeps its fd before Linux 6.3"} if ring_keeps_its_fd() else {}


@pytest.mark.parametrize("mode", modes(skip=OLD))
def test_found_ring_fds_thread_per_connection(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("found_ring_fds", tmp_path_factory)
    r = same_as_plain(mode, [exe], tmp_path)
    # the thread whose ring found no fd number left goes without, silently
    # (it had said "uring executor unavailable (Too many open files)")
    assert r is None or b"esca:" not in r.err, r
