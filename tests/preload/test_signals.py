"""Signals, waits and the end of the process (issue 12, defects 3-7): the same
C program (progs/signals.c) run plainly and under libesca.so with each
executor gives the same output, exit status and peer bytes, and the stats
file shows the calls at stake were really deferred (so each test fails
with ESCA_DISABLE=1).

fd 3 of the program is a unix stream socket: a kind of fd the library
defers to (fds 0-2 never are: DESIGN.md, "Deferral scope").
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import executor_params, executor_skip_reason

import pyesca

PROGS = Path(__file__).parent / "progs"
LIB = Path(pyesca.__file__).parent / "libesca.so"


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exe = tmp_path_factory.mktemp("signals") / "signals"
    subprocess.run(
        ["cc", "-std=gnu11", "-O1", "-Wall", "-Wextra", "-Werror", "-pthread",
         "-o", str(exe), str(PROGS / "signals.c")],
        check=True,
    )
    return exe


class Run:
    def __init__(self, rc: int, out: bytes, err: bytes, stats: dict | None) -> None:
        self.rc, self.out, self.err, self.stats = rc, out, err, stats

    def deferred(self, call: str = "write") -> int:
        assert self.stats is not None
        return int(self.stats["syscalls"][call]["deferred"])


def run(mode: str, argv: list[str], tmp_path: Path, env_extra: dict[str, str] | None = None,
        timeout: float = 60, out_fd: int = 3) -> Run:
    """argv with fd OUT_FD (3, or 1) a unix stream socket (read to EOF), fd 2
    a pipe."""
    env = dict(os.environ)
    stats = tmp_path / f"stats-{mode}-{'-'.join(Path(a).name for a in argv)}.json"
    if mode != "plain":
        reason = executor_skip_reason(mode)
        if reason:
            pytest.skip(reason)
        env["LD_PRELOAD"] = str(LIB)
        env["ESCA_EXECUTOR"] = mode
        env["ESCA_STATS"] = str(stats)
        env["ESCA_QUIET"] = "1"
    env.update(env_extra or {})
    a, b = socket.socketpair()
    chunks: list[bytes] = []

    def reader() -> None:
        while True:
            d = b.recv(65536)
            if not d:
                return
            chunks.append(d)

    t = threading.Thread(target=reader)
    t.start()
    try:
        if out_fd == 1:
            p = subprocess.run(argv, env=env, stdout=a.fileno(), stderr=subprocess.PIPE,
                               timeout=timeout)
        else:
            p = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, timeout=timeout, pass_fds=(out_fd,),
                               preexec_fn=lambda: os.dup2(a.fileno(), out_fd))
    finally:
        a.close()
        t.join(timeout=10)
        b.close()
    s = json.loads(stats.read_text()) if mode != "plain" and stats.exists() else None
    return Run(p.returncode, b"".join(chunks), p.stderr, s)


MODES = executor_params()


# ---- 3. fold: no event for an fd the program closed -------------------------

@pytest.mark.parametrize("mode", MODES)
def test_fold_no_event_for_closed_fd(mode: str, prog: Path, tmp_path: Path) -> None:
    plain = run("plain", [str(prog), "fold_close"], tmp_path)
    got = run(mode, [str(prog), "fold_close"], tmp_path)
    assert plain.out.startswith(b"events after close: 0\npeer got 1: r\n")
    assert (got.rc, got.out) == (plain.rc, plain.out)
    assert got.deferred("write") >= 1 and got.deferred("close") >= 1


# ---- 4. fold: the watchdog's signal is no EINTR of the program's -----------

@pytest.mark.parametrize("mode", MODES)
def test_wait_not_cut_by_timer_signal(mode: str, prog: Path, tmp_path: Path) -> None:
    plain = run("plain", [str(prog), "fold_eintr"], tmp_path)
    # a flush bound shorter than the watchdog's period: it signals at once
    got = run(mode, [str(prog), "fold_eintr"], tmp_path,
              {"ESCA_FLUSH_US": "100", "ESCA_WATCHDOG_MS": "5"})
    assert plain.out == b"".join(b"wait %d: 0 - full\n" % i for i in range(3))
    assert got.out == plain.out
    assert got.deferred("write") >= 3


# ---- 5. a signal handler that writes ---------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_handler_write_keeps_table_and_order(mode: str, prog: Path, tmp_path: Path) -> None:
    got = run(mode, [str(prog), "handler_write"], tmp_path, timeout=120)
    assert got.rc == 0, got.err
    assert b"handler lines all" in got.err
    assert got.deferred("write") > 1000


# ---- 6. every thread's bytes at exit ---------------------------------------

@pytest.mark.parametrize("how", ["return", "exit"])
@pytest.mark.parametrize("watchdog", ["10", "0"])
@pytest.mark.parametrize("mode", MODES)
def test_other_threads_bytes_at_exit(mode: str, how: str, watchdog: str, prog: Path,
                                     tmp_path: Path) -> None:
    argv = [str(prog), "exit_threads", how]
    plain = run("plain", argv, tmp_path)
    got = run(mode, argv, tmp_path, {"ESCA_WATCHDOG_MS": watchdog, "ESCA_FLUSH_US": "1000000"})
    assert sorted(plain.out.splitlines()) == [b"main line", b"worker line"]
    assert got.rc == plain.rc == 0
    assert sorted(got.out.splitlines()) == sorted(plain.out.splitlines())
    assert got.deferred("write") == 2


# ---- 7. a crash, or the program killing itself -----------------------------

CRASHES = {
    "abort": -signal.SIGABRT,
    "segv": -signal.SIGSEGV,
    "kill9": -signal.SIGKILL,
    "raise_term": -signal.SIGTERM,
    "own_handler": 3,
    "thread_abort": -signal.SIGABRT,
}


@pytest.mark.parametrize("how", sorted(CRASHES))
@pytest.mark.parametrize("mode", MODES)
def test_bytes_out_before_a_crash(mode: str, how: str, prog: Path, tmp_path: Path) -> None:
    argv = [str(prog), "crash", how]
    # no core files from these on purpose
    env = {"ESCA_FLUSH_US": "1000000"}
    plain = run("plain", argv, tmp_path)
    got = run(mode, argv, tmp_path, env)
    assert plain.rc == CRASHES[how]
    assert got.rc == plain.rc
    assert sorted(got.out.splitlines()) == sorted(plain.out.splitlines())
    assert b"before the end" in got.out
    assert got.err == plain.err == b"fatal: the end\n"
    assert got.deferred("write") >= 1
    # stderr never waits: fd 2 is never deferred
    assert got.stats is not None
    assert got.stats["syscalls"]["write"]["passed"]["fd"] >= 1


@pytest.mark.parametrize("mode", MODES)
def test_python_print_then_sigkill_itself(mode: str, tmp_path: Path) -> None:
    # print() writes fd 1, which is never deferred: out before the kill
    code = ("import os\nprint('one', flush=True)\nprint('two', flush=True)\n"
            "os.kill(os.getpid(), 9)\n")
    argv = [sys.executable, "-c", code]
    plain = run("plain", argv, tmp_path, out_fd=1)
    got = run(mode, argv, tmp_path, {"ESCA_FLUSH_US": "1000000"}, out_fd=1)
    assert plain.rc == got.rc == -signal.SIGKILL
    assert plain.out == got.out == b"one\ntwo\n"
    assert got.deferred("write") == 0
    # the same on a socket the library defers to: the kill flushes first
    code = ("import os\nos.write(3, b'one\\n')\nos.write(3, b'two\\n')\n"
            "os.kill(os.getpid(), 9)\n")
    argv = [sys.executable, "-c", code]
    plain = run("plain", argv, tmp_path)
    got = run(mode, argv, tmp_path, {"ESCA_FLUSH_US": "1000000"})
    assert plain.rc == got.rc == -signal.SIGKILL
    assert plain.out == got.out == b"one\ntwo\n"
    assert got.deferred("write") >= 2
