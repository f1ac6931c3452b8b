"""README, Limits: entries that had no test pinning them, each a program
(progs/limits.c) whose outcome under the library differs from the plain run
exactly as the entry says.  If a limit is lifted (or changes silently) the
test fails and the README entry must change with it.  Each executor case
also checks from the stats that the library was at work."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import pytest

from pyesca import stats as esca_stats

from .trust import (
    argv_for,
    assert_deferred,
    env_for,
    modes,
    prog,
    read_until_eof,
    run_on_sockets,
)

NO_WATCHDOG = {"ESCA_WATCHDOG_MS": "0"}


@pytest.mark.parametrize("mode", modes())
def test_limit_raw_syscall_write_not_seen(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Limits: writes that bypass libc's exported functions (a raw
    `syscall`) are not ordered with the calls deferred on the same socket."""
    exe = prog("limits", tmp_path_factory)
    r = run_on_sockets(mode, [exe, "raw"], tmp_path, env=NO_WATCHDOG)
    assert r.rc == 0, r
    assert r.peer == (b"123" if mode == "plain" else b"213"), r
    assert_deferred(mode, r.stats_path, write=2)


@pytest.mark.parametrize("mode", modes())
def test_limit_fdopen_number_never_deferred_again(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Limits: a number once given to fdopen for writing is never deferred
    to again, whatever it is reused for (here a new connected socket)."""
    exe = prog("limits", tmp_path_factory)
    r = run_on_sockets(mode, [exe, "fdopen_reuse"], tmp_path)
    assert (r.rc, r.out) == (0, b"reused 1\ngot reuse\n"), r
    if mode != "plain":
        w = esca_stats.load(r.stats_path).total.syscalls["write"]
        # the control write deferred; the reused number's passed through
        assert w.deferred == 1 and w.passed["fd"] >= 1, w


@pytest.mark.parametrize("mode", modes())
def test_sigterm_from_outside_delivers_queued_bytes(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A signal sent from another process that ends this one (SIGTERM at its
    default) finds the queued bytes sent first, as Linux had sent them at
    the call: the library's handler for the signals that end a process at
    their default flushes, then ends it by the same signal (DESIGN.md,
    "Flush triggers", ending_sigs).  Until session 10 a documented limit:
    the bytes were lost.  The program blocks on a futex (no flush trigger;
    the watchdog off)."""
    exe = prog("limits", tmp_path_factory)
    st = tmp_path / f"stats-{mode}.json"
    mine, theirs = socket.socketpair()
    fd = theirs.fileno()
    p = subprocess.Popen(
        argv_for(mode, [exe, "sigterm"], st),
        env=env_for(mode, {"TRUST_OUT": str(fd), **NO_WATCHDOG}),
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        pass_fds=(fd,),
    )
    theirs.close()
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == b"ready\n"
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == -signal.SIGTERM
        got, eof = read_until_eof(mine)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        mine.close()
    assert eof
    assert got == b"x", (mode, got)
    # the x was deferred (the library's handler wrote the stats at the end)
    assert_deferred(mode, st, write=1)


@pytest.mark.parametrize("mode", modes())
def test_limit_timer_signal_taken_loses_other_threads_bytes_at_exit(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Limits: where the program took the timer signal (SIGRTMAX-7), a
    thread's queued bytes are lost at exit (the exiting thread cannot ask it
    to flush)."""
    exe = prog("limits", tmp_path_factory)
    r = run_on_sockets(mode, [exe, "timer_taken"], tmp_path, env=NO_WATCHDOG)
    assert r.rc == 0, r
    assert r.peer == (b"w" if mode == "plain" else b""), r
    assert_deferred(mode, r.stats_path, write=1)


@pytest.mark.parametrize("mode", modes())
def test_limit_error_one_call_late_and_close_clears_it(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Limits: a deferred call's error is seen one call late; a close
    clears it (a new socket at the number does not inherit it)."""
    exe = prog("limits", tmp_path_factory)
    r = run_on_sockets(mode, [exe, "close_clears"], tmp_path)
    assert r.rc == 0, r
    first = b"write -1 Broken pipe\n" if mode == "plain" else b"write 1 \n"
    assert r.out == first + b"close 0\nreused 1 write 1\ngot y\n", r
    assert_deferred(mode, r.stats_path, write=2)
