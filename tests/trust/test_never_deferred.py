"""README, "What is deferred and what never is": every kind of call the
README says is never deferred, one run each (progs/never_deferred.c), plainly
and under each executor.  The program's results and what its readers got
must be the plain run's, and the stats must show the case's calls passed
through (never deferred) while the program's control write to a connected
stream socket was deferred (so the library was at work: in pass-through,
ESCA_DISABLE=1, every executor case fails).  A test fails if one of these
kinds is ever deferred again."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyesca import stats as esca_stats

from .trust import modes, prog, run_on_sockets

# case -> {call: times it must have been passed through}
CASES: dict[str, dict[str, int]] = {
    "pipe": {"write": 1, "writev": 1, "close": 1},
    "file": {"write": 1, "writev": 1, "close": 1},
    "dgram": {"write": 1, "send": 1, "close": 1},
    "eventfd": {"write": 1, "close": 1},
    "devnull": {"write": 1, "writev": 1, "close": 1},
    "tty": {"write": 1, "close": 1},
    "stdio": {"write": 2, "writev": 1},  # fd 1 (a socket here) and its dup
    "fdopen": {"write": 2, "close": 1},  # a FILE's fd and its dup
    "listen": {"close": 1},  # a listening socket's close: its port
    "unconnected": {"close": 1},
    "sendto_addr": {"sendto": 1},  # with an address (the other one: deferred)
    "ancillary": {"sendmsg": 1},  # SCM_RIGHTS
    "flags": {"send": 2},  # MSG_EOR, MSG_OOB
    "setsockopt": {"setsockopt": 2},  # SO_SNDBUF; TCP_NODELAY on a unix socket
    "budget": {"write": 1},  # over ESCA_BUDGET
}
# deferred, and not the case's: the control write; sendto_addr's sendto
# without an address; flags' send without flags
DEFERRED_OK = {"write": 1}
DEFERRED_OK_IN = {"sendto_addr": {"sendto": 1}, "flags": {"send": 1}}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("mode", modes())
def test_never_deferred(
    mode: str, case: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("never_deferred", tmp_path_factory)
    env = {"ESCA_BUDGET": "4096"}
    plain = run_on_sockets("plain", [exe, case, tmp_path], tmp_path, env=env, tag=case)
    assert plain.rc == 0, plain
    if b"tty unavailable" in plain.out:
        pytest.skip("no pseudo-terminal here (posix_openpt)")
    if mode == "plain":
        return
    r = run_on_sockets(mode, [exe, case, tmp_path], tmp_path, env=env, tag=case)
    assert (r.rc, r.out, r.peer) == (plain.rc, plain.out, plain.peer), r
    tot = esca_stats.load(r.stats_path).total
    assert tot.syscalls["write"].deferred >= 1, f"{mode}: the control write was not deferred"
    for call, n in CASES[case].items():
        s = tot.syscalls[call]
        allowed = {**DEFERRED_OK, **DEFERRED_OK_IN.get(case, {})}.get(call, 0)
        assert s.deferred <= allowed and s.passed_total >= n, (
            f"{mode} {case}: {call} deferred {s.deferred} (at most {allowed}),"
            f" passed {s.passed_total} (at least {n})"
        )
