"""Found while rewriting tests/trust for the deferral scope (not one of issue
12's defects): sends to a full non-blocking self-pipe, a call that waits
for another socket's entries, then exit (progs/found_parked.c).

Plain: the full self-pipe answers EAGAIN; `dup2` over (or `fcntl` on)
another socket and then the exit return at once.  `uring` hung here: the
exit path waited for the send parked on the full self-pipe (told success;
its reader is the program that is exiting) until the alarm killed it.  Now
the exit path's last drain gives up after 1 s without progress (DESIGN.md,
"Contract: parked sends").  `sequential` completes each send in place
(README, Limits), so the write to its own full self-pipe blocks the thread
for good."""

from __future__ import annotations

from pathlib import Path

import pytest

from .trust import assert_deferred, modes, prog, run


def cases() -> list[object]:
    """(mode, how): sequential's strict xfail on dup2 only (its hang is the
    same send in place either way, and costs the program's 5 s alarm)."""
    out = []
    for how in ("dup2", "fcntl"):
        ps = modes()
        out += [pytest.param(p.values[0], how, marks=p.marks, id=f"{p.id}-{how}") for p in ps]
    return out


@pytest.mark.parametrize(("mode", "how"), cases())
def test_found_send_to_a_full_self_pipe_then_exit(
    mode: str, how: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("found_parked", tmp_path_factory)
    r = run(mode, [exe, how], tmp_path, timeout=30)
    # the program's alarm(10) kills a hang with SIGALRM (rc -14)
    assert r.rc == 0, r
    call = "fcntl(conn)" if how == "fcntl" else "dup2 over conn"
    # the call itself must not wait for the parked send (1 s is generous)
    assert r.lines() == ["self-pipe full: Resource temporarily unavailable", f"{call} = 1"], r
    assert_deferred(mode, r.stats_path, write=2)
