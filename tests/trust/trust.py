"""Issue 12: the same small C program run plainly and under `esca run
--executor E` for every executor E of the core (tests/conftest.py MODES:
sequential, uring, and lkm where /dev/esca exists; each skipped with its
reason where it cannot run).

Each test compares what a peer, a file or the program itself sees in the
three runs, and asserts from the stats file (`--stats PATH`) that the calls it
is about were deferred, so that it fails when the library passes everything
through (ESCA_DISABLE=1; `ESCA_TRUST_PASSTHROUGH=1 pytest tests/trust` forces
that for the esca runs, to check that the tests would notice).

A defect that today's library has is an xfail(strict=True) on that executor's
case: the suite stays green and flips when the defect is fixed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import conftest
import pytest

from pyesca import stats as esca_stats
from reliability.conftest import compile_c
from servers.conftest import mode_skip_reason
from servers.harness import esca_command

HERE = Path(__file__).resolve().parent
PROGS = HERE / "progs"
MODES = tuple(conftest.MODES)  # "plain", then every executor (lkm included)
TIMEOUT = 60.0

_built: dict[str, Path] = {}


def prog(name: str, tmp_factory: pytest.TempPathFactory, *extra: str) -> Path:
    """progs/NAME.c compiled once per session (-Wall -Wextra -Werror)."""
    if name not in _built:
        out = tmp_factory.mktemp("trust-bin")
        _built[name] = compile_c(PROGS / f"{name}.c", out, "-pthread", *extra)
    return _built[name]


def modes(
    maybe: dict[str, str] | None = None, skip: dict[str, str] | None = None, **xfail: str
) -> list[Any]:
    """pytest params plain, then each executor; xfail={executor: reason} marks
    that executor's case xfail(strict=True); maybe={executor: reason}
    xfail(strict=False): expected to fail as another executor does, never
    seen run (lkm outside the QEMU guest); skip={executor: reason}: a known
    limit pinned by a strict xfail elsewhere, not paid for again (a hang
    costs the program's alarm); skipped where it cannot run."""
    out = []
    for m in MODES:
        marks: list[Any] = []
        reason = mode_skip_reason(m) or (skip or {}).get(m)
        if reason:
            marks.append(pytest.mark.skip(reason=reason))
        if m in xfail:
            marks.append(pytest.mark.xfail(strict=True, reason=xfail[m]))
        elif maybe and m in maybe:
            marks.append(pytest.mark.xfail(strict=False, reason=maybe[m]))
        out.append(pytest.param(m, marks=marks, id=m))
    return out


def passthrough() -> bool:
    return os.environ.get("ESCA_TRUST_PASSTHROUGH") == "1"


def argv_for(mode: str, argv: Sequence[str], stats: Path, *esca_opts: str) -> list[str]:
    if mode == "plain":
        return [str(a) for a in argv]
    return [
        *esca_command(),
        "run",
        "--executor",
        mode,
        "--stats",
        str(stats),
        *esca_opts,
        "--",
        *[str(a) for a in argv],
    ]


def env_for(mode: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("ESCA_TRUST_PASSTHROUGH", None)
    if mode != "plain" and passthrough():
        env["ESCA_DISABLE"] = "1"
    env.update(extra or {})
    return env


@dataclass
class Run:
    mode: str
    rc: int
    out: bytes
    err: bytes
    stats_path: Path
    peer: bytes = b""

    def text(self) -> str:
        return self.out.decode(errors="replace")

    def lines(self) -> list[str]:
        return self.text().splitlines()

    def stats(self) -> esca_stats.ProcessStats:
        return esca_stats.load(self.stats_path).total

    def __str__(self) -> str:
        return (
            f"mode={self.mode} rc={self.rc}\npeer={self.peer[:2000]!r}"
            f"\nstdout={self.out[:2000]!r}\nstderr={self.err[:2000]!r}"
        )


def run(
    mode: str,
    argv: Sequence[str],
    tmp: Path,
    *,
    esca_opts: Sequence[str] = (),
    env: dict[str, str] | None = None,
    timeout: float = TIMEOUT,
    tag: str = "run",
    input: bytes | None = None,
    **popen: Any,
) -> Run:
    """Run argv in mode to completion; stdout/stderr captured unless given."""
    st = tmp / f"stats-{tag}-{mode}.json"
    kw: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    if input is not None:
        kw["stdin"] = subprocess.PIPE
    kw.update(popen)
    p = subprocess.Popen(argv_for(mode, argv, st, *esca_opts), env=env_for(mode, env), **kw)
    try:
        out, err = p.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(
            f"{mode}: {argv} still running after {timeout}s"
            f" (stdout {out[:500]!r}, stderr {err[:500]!r})"
        ) from None
    return Run(mode, p.returncode, out or b"", err or b"", st)


_plain_runs: dict[tuple[str, ...], tuple[int, list[str]]] = {}


def same_as_plain(
    mode: str,
    argv: Sequence[str],
    tmp: Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 30,
    rc: int | None = 0,
) -> Run | None:
    """The found_*.c cases' check: argv's exit status and output lines under
    mode are plain's (plain's run once per argv and env, and checked to exit
    rc unless None); None for mode plain, else the run (for its stats)."""
    key = (*map(str, argv), *sorted(f"{k}={v}" for k, v in (env or {}).items()))
    if key not in _plain_runs:
        p = run("plain", argv, tmp / "plain", timeout=timeout, env=env)
        if rc is not None:
            assert p.rc == rc, p
        _plain_runs[key] = (p.rc, p.lines())
    if mode == "plain":
        return None
    r = run(mode, argv, tmp, timeout=timeout, env=env)
    assert (r.rc, r.lines()) == _plain_runs[key], r
    return r


def start(
    mode: str,
    argv: Sequence[str],
    tmp: Path,
    *,
    esca_opts: Sequence[str] = (),
    env: dict[str, str] | None = None,
    tag: str = "run",
    **popen: Any,
) -> tuple[subprocess.Popen[bytes], Path]:
    st = tmp / f"stats-{tag}-{mode}.json"
    p = subprocess.Popen(argv_for(mode, argv, st, *esca_opts), env=env_for(mode, env), **popen)
    return p, st


def deferred(path: Path, *calls: str) -> dict[str, int]:
    """{call: deferred count} summed over the processes of the stats file."""
    tot = esca_stats.load(path).total
    return {c: tot.syscalls[c].deferred for c in calls}


def assert_deferred(mode: str, path: Path, **at_least: int) -> esca_stats.ProcessStats | None:
    """Under an executor: each call deferred at least that many times."""
    if mode == "plain":
        return None
    assert path.exists() or esca_stats.stats_files(path), f"{mode}: no stats file at {path}"
    tot = esca_stats.load(path).total
    got = {c: tot.syscalls[c].deferred for c in at_least}
    for c, n in at_least.items():
        assert got[c] >= n, (
            f"{mode}: {c} deferred {got[c]} < {n}: the library passed it"
            f" through ({got}); executor {tot.executor!r}"
        )
    return tot


def assert_passed(mode: str, path: Path, **at_least: int) -> esca_stats.ProcessStats | None:
    """Under an executor: each call passed through to the kernel at least
    that many times and never deferred (calls on files, pipes, listening
    sockets: DESIGN.md, "Deferral scope")."""
    if mode == "plain":
        return None
    assert path.exists() or esca_stats.stats_files(path), f"{mode}: no stats file at {path}"
    tot = esca_stats.load(path).total
    got = {c: (tot.syscalls[c].deferred, tot.syscalls[c].passed_total) for c in at_least}
    for c, n in at_least.items():
        deferred, passed = got[c]
        assert deferred == 0 and passed >= n, (
            f"{mode}: {c} deferred {deferred} (want 0), passed {passed} (want >= {n}):"
            f" {got}; executor {tot.executor!r}"
        )
    return tot


def read_until_eof(s: socket.socket, timeout: float = 20.0) -> tuple[bytes, bool]:
    """Everything until EOF; (bytes, saw_eof) - no EOF within timeout is False."""
    s.settimeout(timeout)
    chunks = []
    try:
        while True:
            c = s.recv(1 << 16)
            if not c:
                return b"".join(chunks), True
            chunks.append(c)
    except (TimeoutError, socket.timeout):
        return b"".join(chunks), False
    except ConnectionResetError:
        return b"".join(chunks), True


def python() -> str:
    return sys.executable


def run_on_sockets(
    mode: str,
    argv: Sequence[str],
    tmp: Path,
    *,
    esca_opts: Sequence[str] = (),
    env: dict[str, str] | None = None,
    timeout: float = TIMEOUT,
    tag: str = "run",
) -> Run:
    """Run argv with stdout, stderr and a third fd, the peer (its number in
    $TRUST_OUT: progs/trust_out.h), each a stream socket read by this
    process until EOF; a program still running after timeout is killed and
    the test fails.  fds 0-2 are never deferred (DESIGN.md, "Deferral
    scope"): the bytes a test is about go to the peer."""
    import threading

    st = tmp / f"stats-{tag}-{mode}.json"
    pairs = {name: socket.socketpair() for name in ("out", "err", "peer")}
    got: dict[str, bytes] = {}

    def reader(name: str, s: socket.socket) -> None:
        got[name] = read_until_eof(s, timeout)[0]

    theirs = {name: pair[1] for name, pair in pairs.items()}
    peer_fd = theirs["peer"].fileno()
    p = subprocess.Popen(
        argv_for(mode, argv, st, *esca_opts),
        env=env_for(mode, {"TRUST_OUT": str(peer_fd), **(env or {})}),
        stdin=subprocess.DEVNULL,
        stdout=theirs["out"],
        stderr=theirs["err"],
        pass_fds=(peer_fd,),
    )
    for s in theirs.values():
        s.close()
    ths = [
        threading.Thread(target=reader, args=(name, pair[0]), daemon=True)
        for name, pair in pairs.items()
    ]
    for t in ths:
        t.start()
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        for t in ths:
            t.join(5)
        raise AssertionError(
            f"{mode}: {argv} still running after {timeout}s"
            f" (peer {got.get('peer', b'')[-300:]!r}, stdout {got.get('out', b'')[-300:]!r})"
        ) from None
    for t in ths:
        t.join(timeout)
    for pair in pairs.values():
        pair[0].close()
    out, err, peer = (got.get(k, b"") for k in ("out", "err", "peer"))
    return Run(mode, p.returncode, out, err, st, peer)
