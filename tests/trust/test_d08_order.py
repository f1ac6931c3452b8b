"""Issue 12 defect 8: writes the library does not see (stdio, dprintf,
children of system/posix_spawn/popen, splice, sendmmsg, pwrite,
copy_file_range) must not be reordered with the ones it deferred."""

from __future__ import annotations

from pathlib import Path

import pytest

from .trust import assert_deferred, modes, prog, run_on_sockets

ON_STDOUT = {
    "stdio": b"123\n",
    "dprintf": b"123\n",
    "system": b"parent-before\nchild\nparent-after\n",
    "posix_spawn": b"parent-before\nchild\nparent-after\n",
    "popen": b"parent-before\nchild\nparent-after\n",
    "splice": b"ABC\n",
    "sendmmsg": b"ABC\n",
}
ON_FILE = {"pwrite": b"BBAA", "copy_file_range": b"AAAABBBB"}

BOTH = ("sequential", "uring")
XFAIL: dict[str, tuple[str, ...]] = {how: BOTH for how in [*ON_STDOUT, *ON_FILE]}


def _reason(how: str) -> str:
    return f"issue 12 defect 8: {how} overtakes the pending deferred write"


def _params() -> list[object]:
    out = []
    for how in [*ON_STDOUT, *ON_FILE]:
        bad = XFAIL.get(how, ())
        for m in modes(**{e: _reason(how) for e in bad}):
            out.append(pytest.param(how, m.values[0], marks=m.marks, id=f"{how}-{m.id}"))
    return out


@pytest.mark.parametrize("how,mode", _params())
def test_d08_unseen_writes_keep_their_order(
    mode: str, how: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("d08_order", tmp_path_factory)
    target = tmp_path / "out.bin"
    # a watchdog slower than the children: the order must not depend on it
    r = run_on_sockets(mode, [exe, how, str(target)], tmp_path, env={"ESCA_WATCHDOG_MS": "2000"})
    assert r.rc == 0, r
    if how in ON_STDOUT:
        assert r.out == ON_STDOUT[how], r
    else:
        assert target.read_bytes() == ON_FILE[how], r
    assert_deferred(mode, r.stats_path, write=1)
