"""Found by session 10's audit of socket state and options
(progs/found_sock_audit.c, whose docstring says each case): calls the
library deferred and told success where Linux answers at the call with an
error, and SIGPIPE - a connect still in progress, a socket shut down for
writing (by the program, or by a reset the program read from SO_ERROR), a
listening or unconnected socket - and an EINPROGRESS that read as ENOTCONN,
a TCP_CORK set through one fd of a socket read back through another, a
folded epoll wait that ran before entries held for a later round, and
sequential's flush of a full table that blocked on a non-blocking writer's
own socket.  Each case's output, exit status included, must be plain's;
every case differed under uring (nb_full: under sequential, a hang) with
the libesca.so of 3a7b16c."""

from __future__ import annotations

from pathlib import Path

import pytest

from .trust import assert_deferred, modes, prog, same_as_plain

CASES = [
    "connecting",
    "shutwr",
    "shutwr_die",
    "listen",
    "notconn",
    "reset",
    "cork_dup",
    "rdhup",
    "many",
    "nb_full",
]
# the calls that must still be deferred where they may be (the library at work)
DEFERRED = {
    "shutwr": {"write": 1, "shutdown": 1},
    "reset": {"write": 1},
    "rdhup": {"write": 1, "shutdown": 1},
    "many": {"write": 257},
    "nb_full": {"write": 2},
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", modes())
def test_found_sock_audit_case(
    mode: str, case: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("found_sock_audit", tmp_path_factory)
    r = same_as_plain(mode, [exe, case], tmp_path, timeout=20, rc=None)
    if r is not None and case in DEFERRED:
        assert_deferred(mode, r.stats_path, **DEFERRED[case])
