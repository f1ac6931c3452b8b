"""SIGPIPE under esca run is what it is without pyesca.

sigpipe_prog.c writes to a socket (unix, tcp) or pipe whose reading end is
closed, with SIGPIPE at its default (the write kills the process), ignored
(the write fails with EPIPE) or with MSG_NOSIGNAL (EPIPE, no signal); back
to back or with an event-loop boundary (poll) between the calls.  The
outcome (killed by which signal, or the exit status and the errno the
program saw) must be the same plainly and under each executor.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import EXECUTORS

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


def under(executor: str, prog: Path, *args: str) -> list[str]:
    if executor == "plain":
        return [str(prog), *args]
    return [*esca_command(), "run", "--executor", executor, "--", str(prog), *args]


@pytest.mark.parametrize("executor", EXECUTORS)
def test_sigpipe_outcome_as_plain(executor: str, prog: Path) -> None:
    reason = mode_skip_reason(executor)
    if reason:
        pytest.skip(reason)
    diffs = []
    for case in CASES:
        plain = outcome(under("plain", prog, *case))
        esca = outcome(under(executor, prog, *case))
        # the control itself: default SIGPIPE kills, unless MSG_NOSIGNAL
        if case[0] == "default" and case[1] != "nosignal":
            assert plain == (-13, ""), (case, plain)
        else:
            assert plain == (3, "error EPIPE sigpipes=0"), (case, plain)
        if esca != plain:
            diffs.append(f"{' '.join(case)}: plain {plain}, {executor} {esca}")
    assert not diffs, "\n".join(diffs)


def _handler_params() -> list[object]:
    out: list[object] = []
    for executor in EXECUTORS:
        for kind in ("unix", "tcp", "pipe"):
            # a write queued after one that failed with EPIPE completes with
            # EPIPE without running (it would raise its own SIGPIPE)
            out.append(pytest.param(executor, kind, id=f"{executor}-{kind}"))
    return out


@pytest.mark.parametrize(("executor", "kind"), _handler_params())
def test_sigpipe_handler_count_as_plain(executor: str, kind: str, prog: Path) -> None:
    """With a SIGPIPE handler the program stops at its first EPIPE, having
    got one signal; under esca it must not get more."""
    reason = mode_skip_reason(executor)
    if reason:
        pytest.skip(reason)
    args = ("handler", "write", kind, "tight")
    plain = outcome(under("plain", prog, *args))
    assert plain == (3, "error EPIPE sigpipes=1"), plain
    assert outcome(under(executor, prog, *args)) == plain
