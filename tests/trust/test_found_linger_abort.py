"""Found by session 20's last review, from reading (progs/found_linger_abort.c):
a close with SO_LINGER {1, 0} of a socket whose send is parked drops that
send (esca_fd_abort), which takes every parked entry of the thread back to
the queue to wait for room, another socket's too; under lkm the reaping
flush that follows waited for room on that other socket, whose peer does
not read: the close never returned (8d52cb2's library, in the guest:
lkm/tests/test_trust.c).  The close must return at once, as plainly."""

from __future__ import annotations

from pathlib import Path

import pytest

from .trust import assert_deferred, modes, prog, same_as_plain


@pytest.mark.parametrize("mode", modes())
def test_found_linger_abort(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("found_linger_abort", tmp_path_factory)
    r = same_as_plain(mode, [exe], tmp_path)
    if r is not None:
        assert_deferred(mode, r.stats_path, write=2)
