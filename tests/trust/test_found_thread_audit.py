"""Found by session 10's audit of threads (progs/found_thread_audit.c, whose
docstring says each case): a thread whose mask blocks the library's timer
signal, then waiting where no interposer sees it, kept its queued bytes for
good: a reply never sent, a mutex hand-over reordered (the other thread's
write waited ~3 s, then went first), bytes lost at exit; and a signalfd
reading every signal got the library's timer signal.  Such a thread now
defers nothing (defer.h, tls_timer_blocked; sigprocmask and pthread_sigmask
interposed).  Each case's output must be plain's; reply, handover, exit and
signalfd failed under both executors with 3a7b16c's library."""

from __future__ import annotations

from pathlib import Path

import pytest

from .trust import modes, prog, run

CASES = ["reply", "handover", "exit", "signalfd"]
_plain: dict[str, list[str]] = {}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", modes())
def test_found_thread_audit_case(
    mode: str, case: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("found_thread_audit", tmp_path_factory)
    if case not in _plain:
        p = run("plain", [exe, case], tmp_path / "plain", timeout=30)
        assert p.rc == 0, p
        _plain[case] = p.lines()
    if mode == "plain":
        return
    r = run(mode, [exe, case], tmp_path, timeout=30)
    assert r.rc == 0, r
    assert r.lines() == _plain[case], r
    # the writes went to the kernel as the thread's mask asks (stats: masked)
    if case != "exit":
        st = r.stats()
        assert st.syscalls["write"].passed.get("masked", 0) >= 1, st.syscalls["write"]
