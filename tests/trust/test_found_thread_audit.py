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

from .trust import modes, prog, same_as_plain

CASES = ["reply", "handover", "exit", "signalfd"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", modes())
def test_found_thread_audit_case(
    mode: str, case: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("found_thread_audit", tmp_path_factory)
    r = same_as_plain(mode, [exe, case], tmp_path)
    # the writes went to the kernel as the thread's mask asks (stats: masked)
    if r is not None and case != "exit":
        st = r.stats()
        assert st.syscalls["write"].passed.get("masked", 0) >= 1, st.syscalls["write"]
