"""Found by an audit of the wait interposers (session 9; progs/wait_audit.c,
whose docstring says what each case saw): with sends parked, so that the
library's waits take rounds and its timer runs, each case's line must be the
same plainly and under each executor - results, errnos, handler runs and
time buckets.  Every case failed with the libesca.so of 8a874dd (a wait's
mask not held across its rounds, select reading and writing whole fd_sets
and bits past nfds, poll refusing nfds = RLIMIT_NOFILE, sleep() rounding up,
nanosleep sleeping on past the program's signal, pause ending at SIGCONT,
the library's timer ending a wait's round every 2 ms).  nanosleep_short
(a nanosleep(1 ms) with sends parked took ~2 ms: the flush before it waited
1 ms) failed under uring with the libesca.so of a37eb61; quiet_poll,
quiet_epoll and quiet_pause (a wait with sends parked spun: its CPU time
was the wait's) with that of 896ca77, in some runs only (the stale ring flag
behind it needs a link crossed in a task-work run just before the wait:
native/tests test_core's progress case checks that mechanism every run).  The cases of
nanosleep_busy with a handler installed by sigset, sysv_signal, signal()
under _XOPEN_SOURCE and ssignal failed under uring with the libesca.so of 3a7b16c
(glibc installs those from inside: the handler ran uncounted)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from test_waits import LIB, PROGS, build, run

from conftest import executor_params

CASES = [
    ["mask"],
    ["select_small"],
    ["select_stale"],
    ["poll_max"],
    ["sleep_ret"],
    ["nanosleep_busy"],
    # handlers installed where glibc calls its sigaction from inside
    ["nanosleep_busy", "sigset"],
    ["nanosleep_busy", "sysv_signal"],
    ["nanosleep_busy", "xopen_signal"],
    ["nanosleep_busy", "ssignal"],
    ["pause_stop"],
    ["poll_quiet"],
    ["nanosleep_short"],
    ["quiet_poll"],
    ["quiet_epoll"],
    ["quiet_pause"],
]


def params() -> list[object]:
    out: list[object] = []
    for case in CASES:
        for p in executor_params():
            mode = p.values[0]  # type: ignore[attr-defined]
            marks = list(p.marks)  # type: ignore[attr-defined]
            out.append(pytest.param(mode, case, marks=marks, id=f"{'-'.join(case)}-{mode}"))
    return out


_plain: dict[str, str] = {}
INSTALLERS = ("sysv.c", "xopen.c")


@pytest.mark.parametrize("mode,case", params())
def test_wait_audit_case(tmp_path: Path, mode: str, case: list[str]) -> None:
    exe = build(tmp_path, "wait_audit", *(str(PROGS / "install" / f) for f in INSTALLERS))
    key = " ".join(case)
    if key not in _plain:
        p = run("plain", [str(exe), *case], timeout=20)
        assert p.returncode == 0, p.stderr
        _plain[key] = p.stdout
    stats = tmp_path / "s.json"
    try:
        got = run(mode, [str(exe), *case], stats, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{mode}: {key} hung")
    assert got.returncode == 0, got.stderr
    assert got.stdout == _plain[key], (got.stdout, _plain[key])
    if case[0] != "sleep_ret":
        # the sends were deferred (and parked): the library was at work
        s = json.loads(stats.read_text())
        assert s["syscalls"]["write"]["deferred"] > 0, s["syscalls"]["write"]


@pytest.mark.parametrize("case", ["threads", "pipe"])
@pytest.mark.parametrize("mode", executor_params())
def test_read_audit_case(tmp_path: Path, mode: str, case: str) -> None:
    """Lever reads (progs/read_audit.c): a socket a read found empty is known
    empty only until any thread's wait or a blocking call.  The note was the
    reading thread's: another thread's edge-triggered wait that handed the
    socket over left it standing (the read answered EAGAIN, the edge spent,
    the server stalled), and so did a blocking read of a pipe a child
    signalled through after sending.  Both failed with 8a874dd's libesca."""
    exe = build(tmp_path, "read_audit", "-pthread")
    plain = run("plain", [str(exe), case], timeout=20)
    assert plain.returncode == 0, plain.stderr
    got = run(mode, [str(exe), case], tmp_path / "s.json", timeout=20)
    assert got.returncode == 0, got.stderr
    assert got.stdout == plain.stdout, (got.stdout, plain.stdout)
    # the lever looked at these reads
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["reads_seen"] > 0, s["reads_seen"]


FLUSH_WAITS = ["pause", "poll", "sigsuspend", "nanosleep", "select", "epoll_wait"]


@pytest.mark.parametrize("masked", ["", "masked"])
@pytest.mark.parametrize("wait", FLUSH_WAITS)
@pytest.mark.parametrize("mode", executor_params())
def test_handler_in_the_flush_before_a_wait(
    tmp_path: Path, mode: str, wait: str, masked: str
) -> None:
    """progs/flush_signal.c: a SIGALRM whose handler ran inside the flush
    that a blocking call runs first (blocked on a peer that reads late:
    under sequential always, under uring with the library's timer signal
    blocked) ends the call with EINTR, as on Linux, where the call was
    already waiting.  Under sequential pause and sigsuspend waited for good
    and the others their whole second with the libesca.so of 3a7b16c (epoll_wait
    masked only); under uring, masked, pause and sigsuspend waited for good
    and nanosleep its second.  Masked (the timer signal blocked), the thread
    now defers nothing: the write blocks as plain's does."""
    exe = build(tmp_path, "flush_signal")
    argv = [str(exe), wait, *([masked] if masked else [])]
    key = " ".join(argv[1:])
    if key not in _plain:
        p = run("plain", argv, timeout=20)
        assert p.returncode == 0, p.stderr
        _plain[key] = p.stdout
    stats = tmp_path / "s.json"
    got = run(mode, argv, stats, timeout=20)
    assert got.returncode == 0, (got.returncode, got.stdout, got.stderr)
    assert got.stdout == _plain[key], (got.stdout, _plain[key])
    s = json.loads(stats.read_text())
    if masked:
        # a thread that blocks the timer signal defers nothing (since the
        # threads' audit: defer.h, tls_timer_blocked): the write went plainly
        assert s["syscalls"]["write"]["passed"]["masked"] > 0, s["syscalls"]["write"]
    else:
        assert s["syscalls"]["write"]["deferred"] > 0, s["syscalls"]["write"]


@pytest.mark.parametrize("mode", executor_params())
def test_reply_polled_by_reading(tmp_path: Path, mode: str) -> None:
    """progs/spin_reply.c: a client writes a request and polls its
    non-blocking socket by reading it until the reply comes, no wait call.
    The second read that finds nothing with nothing deferred since sends
    what is queued (read.c, read_spins): with the timer's shot at 1 s, every
    round trip took a second with the libesca.so of 3a7b16c (the request
    went at the shot; plain: microseconds)."""
    exe = build(tmp_path, "spin_reply")
    plain = run("plain", [str(exe)], timeout=30)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith("round trips under 200 ms: 5 of 5"), plain.stdout
    stats = tmp_path / "s.json"
    got = run(mode, [str(exe)], stats, timeout=30, ESCA_FLUSH_US="1000000")
    assert got.returncode == 0, got.stderr
    assert got.stdout == plain.stdout, (got.stdout, plain.stdout)
    s = json.loads(stats.read_text())
    assert s["syscalls"]["write"]["deferred"] >= 5, s["syscalls"]["write"]


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
@pytest.mark.parametrize("case", ["quiet_poll", "quiet_pause"])
@pytest.mark.parametrize("mode", executor_params())
def test_no_failed_read_of_the_progress_fd(tmp_path: Path, mode: str, case: str) -> None:
    """A poll or pause woken by the progress fd read it, to drain an
    eventfd's count; but the progress fd is an epoll set (sequential, lkm,
    and uring since session 19), and that read failed with EINVAL, a kernel
    entry wasted each wake-up: 25 (sequential) and 52 (uring) in quiet_poll's
    rounds with 3a2e3b8's library.  Only uring's eventfd fallback is drained
    now, by the executor (uring_setup.c, esca__uring_progress_arm)."""
    exe = build(tmp_path, "wait_audit", *(str(PROGS / "install" / f) for f in INSTALLERS))
    p = subprocess.run(
        ["strace", "-f", "-Z", "-e", "trace=read", "-E", f"LD_PRELOAD={LIB.resolve()}",
         "-E", f"ESCA_EXECUTOR={mode}", "-E", "ESCA_QUIET=1", str(exe), case],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    failed = [ln for ln in p.stderr.splitlines() if "EINVAL" in ln]
    assert failed == [], (mode, case, failed[:5])
