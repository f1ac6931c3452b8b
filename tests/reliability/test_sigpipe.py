"""SIGPIPE under esca run is what it is without pyesca.

sigpipe_prog.c writes to a socket (unix, tcp) or pipe whose reading end is
closed, with SIGPIPE at its default (the write kills the process), ignored
(the write fails with EPIPE) or with MSG_NOSIGNAL (EPIPE, no signal); back
to back or with an event-loop boundary (poll) between the calls.  The
outcome (killed by which signal, or the exit status and the errno the
program saw) must be the same plainly and under each executor.

And the outcome must be the deferred calls' (the stats file, `esca run
--stats`): on a socket, the executor deferred the call the case is about
(the EPIPE came from a flush, not from a call made plainly); on a pipe,
never deferred (DESIGN.md, "Deferral scope"), the library saw the call and
passed it.  Both fail in pass-through (ESCA_DISABLE=1 sees nothing).  A
process SIGPIPE kills has no dependable stats file (the library writes it at
exit, or at most once per interval from a flush: the kill comes inside a
flush), so those cases are checked by their outcome only; the same calls,
up to the same failing one, are checked for deferral in the cases where
SIGPIPE is ignored, handled or suppressed (MSG_NOSIGNAL).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import EXECUTORS

from pyesca.stats import load as load_stats
from servers.conftest import mode_skip_reason
from servers.harness import esca_command
from .conftest import HERE, compile_c

pytestmark = pytest.mark.reliability

CASES = [
    (disp, call, kind, loop)
    for disp in ("default", "ignore")
    for call in ("write", "writev", "send", "nosignal")
    for kind in ("unix", "tcp", "pipe")
    for loop in ("tight", "poll")
    if kind != "pipe" or call in ("write", "writev")
]


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_c(HERE / "sigpipe_prog.c", tmp_path_factory.mktemp("sigpipe"))


def outcome(argv: list[str]) -> tuple[int, str]:
    p = subprocess.run(
        argv, capture_output=True, text=True, timeout=30, check=False, env=None
    )
    return p.returncode, p.stdout.strip()


def under(executor: str, prog: Path, *args: str, stats: Path | None = None) -> list[str]:
    if executor == "plain":
        return [str(prog), *args]
    opt = ["--stats", str(stats)] if stats is not None else []
    return [*esca_command(), "run", "--executor", executor, *opt, "--", str(prog), *args]


# the interposed call each CALL of sigpipe_prog.c makes
SYSCALL = {"write": "write", "writev": "writev", "send": "send", "nosignal": "send"}


def deferral_problem(executor: str, case: tuple[str, ...], stats: Path) -> str:
    """'' when the stats say the case's call was deferred by executor (a
    socket) or seen and passed (a pipe); else what is wrong."""
    call, kind = SYSCALL[case[1]], case[2]
    try:
        t = load_stats(stats).total
    except FileNotFoundError:
        return "no stats file"
    c: Any = t.syscalls[call]
    if t.executor != executor:
        return f"executor {t.executor!r} ({t.fallback_reason})"
    if kind == "pipe":
        ok = c.seen > 0 and c.deferred == 0 and c.passed["fd"] == c.seen
        return "" if ok else f"pipe {call} not seen and passed: {c}"
    # the calls before the failing one were all deferred: the EPIPE came
    # from the executor's run of them, and surfaced on a later call
    ok = c.deferred > 0 and c.errors_surfaced >= 1
    return "" if ok else f"socket {call} not deferred (or no error surfaced): {c}"


@pytest.mark.parametrize("executor", EXECUTORS)
def test_sigpipe_outcome_as_plain(executor: str, prog: Path, tmp_path: Path) -> None:
    reason = mode_skip_reason(executor)
    if reason:
        pytest.skip(reason)
    diffs = []
    checked = 0
    for i, case in enumerate(CASES):
        stats = tmp_path / f"{i}.json"
        plain = outcome(under("plain", prog, *case))
        esca = outcome(under(executor, prog, *case, stats=stats))
        # the control itself: default SIGPIPE kills, unless MSG_NOSIGNAL
        killed = case[0] == "default" and case[1] != "nosignal"
        if killed:
            assert plain == (-13, ""), (case, plain)
        else:
            assert plain == (3, "error EPIPE sigpipes=0"), (case, plain)
        if esca != plain:
            diffs.append(f"{' '.join(case)}: plain {plain}, {executor} {esca}")
        elif not killed:
            checked += 1
            problem = deferral_problem(executor, case, stats)
            if problem:
                diffs.append(f"{' '.join(case)}: {problem}")
    assert not diffs, "\n".join(diffs)
    # every call, kind and loop, with SIGPIPE ignored or MSG_NOSIGNAL
    assert checked == sum(1 for c in CASES if not (c[0] == "default" and c[1] != "nosignal"))


def _handler_params() -> list[object]:
    out: list[object] = []
    for executor in EXECUTORS:
        for kind in ("unix", "tcp", "pipe"):
            # a write queued after one that failed with EPIPE completes with
            # EPIPE without running (it would raise its own SIGPIPE)
            out.append(pytest.param(executor, kind, id=f"{executor}-{kind}"))
    return out


@pytest.mark.parametrize(("executor", "kind"), _handler_params())
def test_sigpipe_handler_count_as_plain(
    executor: str, kind: str, prog: Path, tmp_path: Path
) -> None:
    """With a SIGPIPE handler the program stops at its first EPIPE, having
    got one signal; under esca it must not get more."""
    reason = mode_skip_reason(executor)
    if reason:
        pytest.skip(reason)
    args = ("handler", "write", kind, "tight")
    plain = outcome(under("plain", prog, *args))
    assert plain == (3, "error EPIPE sigpipes=1"), plain
    stats = tmp_path / "s.json"
    assert outcome(under(executor, prog, *args, stats=stats)) == plain
    # a socket's writes were deferred (the one signal came from the flush);
    # a pipe's were seen and passed
    problem = deferral_problem(executor, args, stats)
    assert not problem, problem
