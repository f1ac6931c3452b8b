"""Found by session 10's audit of processes and signals
(progs/found_proc_audit.c, whose docstring says each case): a fork in a
program with a second thread that had written, _Fork (fork without the
atfork handlers), quick_exit and execveat (which end the process or its
image where no interposer saw it), the handler installers sigset and
sysv_signal, through which glibc changed dispositions behind the
library's back, and signals at their default action that end the writer
where no kill() or raise() of its own was seen (a timer's SIGALRM, a
SIGTERM unblocked or queued to the thread, a SA_RESETHAND handler's second
SIGTERM, another process's SIGTERM).  What the peer got and the writer's status must be
plain's; each case but sigset_old lost or reordered bytes under uring
with the libesca.so of 3a7b16c, and sigset_old answered the library's own
handlers."""

from __future__ import annotations

from pathlib import Path

import pytest

from .trust import assert_deferred, modes, prog, same_as_plain

CASES = [
    "fork_mt",
    "_Fork",
    "quick_exit",
    "execveat",
    "sigset_old",
    "sigset_segv",
    "alarm",
    "unblock",
    "sigqueue",
    "resethand",
    "external",
    "clone_vm",
    "clone_fork",
]
# no timer shot of the library's sends the bytes before the signal ends the writer
ENV = {"ESCA_FLUSH_US": "1000000"}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", modes())
def test_found_proc_audit_case(
    mode: str, case: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("found_proc_audit", tmp_path_factory)
    r = same_as_plain(mode, [exe, case], tmp_path, env=ENV)
    if r is not None and case != "execveat":  # the new image's stats replace the writer's
        assert_deferred(mode, r.stats_path, write=1)
