"""fdinfo.users counts each entry naming an fd from its queueing to its
completion (DESIGN.md, "Contract: fd lifetime"); a count one low ends a held
close early.  Lever compose's cork, made real in the queue before a
sendfile (cork.c, cork_queued), was queued uncounted and its completion
gave back the sendfile's count: 2,126 counts given back at zero in one
nginx run under load, and the failed queue of a sendfile behind it wrapped
a count into "held close" (live sockets read as closed).  The stats'
fd_count_underflows counts such give-backs; progs/cork_sendfile.c does
nginx's cork, write, sendfile, uncork."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_waits import build, run

from conftest import executor_params


@pytest.mark.parametrize("mode", executor_params())
def test_no_fd_count_given_back_at_zero(tmp_path: Path, mode: str) -> None:
    exe = build(tmp_path, "cork_sendfile")
    stats = tmp_path / "s.json"
    p = run(mode, [str(exe), str(tmp_path / "f.bin")], stats, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "the peer got every byte\n", p.stdout
    s = json.loads(stats.read_text())
    assert s["syscalls"]["sendfile"]["deferred"] > 0, s["syscalls"]["sendfile"]
    assert s["fd_count_underflows"] == 0, s["fd_count_underflows"]
