"""Issue 12 defect 8: writes the library does not see (stdio via fdopen,
dprintf, children of system/posix_spawn/popen, splice, sendmmsg) must not be
reordered with the ones it deferred.  They reach the peer, a stream socket
that is not fd 0-2 (DESIGN.md, "Deferral scope": fds 0-2 are never
deferred), after a write the library deferred on it.

pwrite and copy_file_range reach only files, which are never deferred now:
those cases assert that the file's writes were passed through, not deferred,
and that the file holds what it holds plainly, so they fail if file
deferral comes back without an answer to them."""

from __future__ import annotations

from pathlib import Path

import pytest

from .trust import assert_deferred, assert_passed, modes, prog, run_on_sockets

ON_PEER = {
    "stdio": b"123\n",
    "dprintf": b"123\n",
    "system": b"parent-before\nchild\nparent-after\n",
    "posix_spawn": b"parent-before\nchild\nparent-after\n",
    "popen": b"parent-before\nchild\nparent-after\n",
    "splice": b"ABC\n",
    "sendmmsg": b"ABC\n",
}
ON_FILE = {"pwrite": b"BBAA", "copy_file_range": b"AAAABBBB"}


@pytest.mark.parametrize("mode", modes())
@pytest.mark.parametrize("how", [*ON_PEER, *ON_FILE])
def test_d08_unseen_writes_keep_their_order(
    mode: str, how: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("d08_order", tmp_path_factory)
    target = tmp_path / "out.bin"
    # a watchdog slower than the children: the order must not depend on it
    r = run_on_sockets(mode, [exe, how, str(target)], tmp_path, env={"ESCA_WATCHDOG_MS": "2000"})
    assert r.rc == 0, r
    if how in ON_PEER:
        assert r.peer == ON_PEER[how], r
        # the write before the unseen one was deferred
        assert_deferred(mode, r.stats_path, write=1)
    else:
        assert target.read_bytes() == ON_FILE[how], r
        # a file: its writes and close go straight to the kernel
        assert_passed(mode, r.stats_path, write=1, close=1)
