"""The lifetime of fd numbers under libesca.so (issue 12, defects 1, 2, 9,
11; DESIGN.md, "Contract: fd lifetime").

progs/fd_lifetime.c runs one case per process; what it prints (what a peer,
a file or the program saw) must be the same plainly and under each
executor, and the stats must show that the library deferred calls in that
run (so the test fails when the library passes everything through).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compile_c, executor_params, executor_skip_reason, ring_keeps_its_fd

import pyesca

PROGS = Path(__file__).parent / "progs"
LIB = Path(pyesca.__file__).parent / "libesca.so"


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_c(PROGS / "fd_lifetime.c", tmp_path_factory.mktemp("fdlife"), "-pthread")


def run(prog: Path, mode: str, case: list[str], stats: Path | None = None,
        **env_extra: str) -> str:
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if mode != "plain":
        env.update(LD_PRELOAD=str(LIB), ESCA_EXECUTOR=mode, ESCA_QUIET="1", **env_extra)
        if stats is not None:
            env["ESCA_STATS"] = str(stats)
    p = subprocess.run([str(prog), *case], env=env, capture_output=True, timeout=60,
                       check=False)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, (mode, case, out, p.stderr.decode(errors="replace"))
    return out


def deferred(stats: Path, call: str) -> int:
    return int(json.loads(stats.read_text())["syscalls"][call]["deferred"])


def passed(stats: Path, call: str, why: str) -> int:
    return int(json.loads(stats.read_text())["syscalls"][call]["passed"][why])


CASES = {
    # 1: a worker's reply, then the I/O thread's close and next accept.  The
    # bound on an entry's age is long, so the worker's reply stays queued
    # until it ends, whatever the machine's load
    "threads": (["threads"], {"ESCA_FLUSH_US": "5000000"}),
    # 2
    "range": (["range"], {}),
    "loop": (["loop"], {}),
    "closerange": (["closerange"], {}),
    "closefrom": (["closefrom"], {}),
    # 9
    "rebind": (["rebind"], {}),
    # 11
    "vfork": (["vfork"], {}),
    "fork": (["fork"], {}),
}


@pytest.mark.parametrize("executor", executor_params())
@pytest.mark.parametrize("case", list(CASES))
def test_same_as_plain(case: str, executor: str, prog: Path, tmp_path: Path) -> None:
    args, env = CASES[case]
    stats = tmp_path / "s.json"
    plain = run(prog, "plain", args)
    got = run(prog, executor, args, stats, **env)
    assert got == plain, f"plain:\n{plain}\n{executor}:\n{got}"
    assert deferred(stats, "write") > 0
    if case == "threads":
        # the I/O thread's close waited for the worker's queued reply
        assert json.loads(stats.read_text())["closes_held"] >= 1


def test_threads_plain_is_what_we_think(prog: Path) -> None:
    """The oracle itself: A gets its reply and EOF, B nothing until closed."""
    out = run(prog, "plain", ["threads"])
    assert out == "B=[] open\nA=[reply-for-A] EOF\nB=[] EOF\n", out


@pytest.mark.parametrize("executor", executor_params())
def test_lock_taken_after_a_close_stays(executor: str, prog: Path, tmp_path: Path) -> None:
    """9: open; close; open; F_SETLK: another process sees the lock (a late
    close of the first fd would drop it).  The file's closes are not
    deferred."""
    stats = tmp_path / "s.json"
    f = tmp_path / "db"
    plain = run(prog, "plain", ["lock", str(f)])
    assert "child sees the file locked" in plain
    assert run(prog, executor, ["lock", str(f)], stats) == plain
    assert deferred(stats, "write") > 0
    assert passed(stats, "close", "fd") >= 2


@pytest.mark.parametrize("executor", executor_params())
def test_listening_socket_closed_at_once(executor: str, prog: Path, tmp_path: Path) -> None:
    stats = tmp_path / "s.json"
    out = run(prog, executor, ["rebind"], stats)
    assert "listener: bind again ok" in out and "bound: bind again ok" in out, out
    assert passed(stats, "close", "fd") >= 3


def test_internal_fds_are_high(tmp_path: Path) -> None:
    """The library's fds (a ring's before Linux 6.3, the lkm fd, the
    eventfd) are at the top of the fd range, away from what a program counts
    on getting; since 6.3 a ring has none (registered, its fd closed); a fork
    child does not inherit them."""
    code = (
        "import os, socket, sys\n"
        "a, b = socket.socketpair()\n"
        "a.send(b'x'); b.recv(1)\n"
        "print(sorted(int(f) for f in os.listdir('/proc/self/fd')), flush=True)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    fds = [int(f) for f in os.listdir('/proc/self/fd')]\n"
        "    os._exit(0 if max(fds) < 512 else 1)\n"
        "print(os.waitpid(pid, 0)[1], flush=True)\n"
    )
    reason = executor_skip_reason("uring")
    if reason:
        pytest.skip(reason)
    env = dict(os.environ, LD_PRELOAD=str(LIB), ESCA_EXECUTOR="uring", ESCA_QUIET="1")
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                       timeout=30, check=False)
    lines = p.stdout.decode().splitlines()
    fds = eval(lines[0])  # noqa: S307 - our own program's repr
    low = [f for f in fds if 2 < f < 64]
    high = [f for f in fds if f >= 64]
    assert all(f >= 512 for f in high), fds
    assert bool(high) == ring_keeps_its_fd(), fds
    # a fork child has none of them (closed, forgotten: its closes are its own)
    assert lines[1] == "0", lines
    # the socketpair, the listing's own fd; nothing of the library's
    assert len(low) <= 3, fds


@pytest.mark.parametrize("executor", executor_params())
def test_dup2_onto_the_librarys_fds_is_ebusy(executor: str, prog: Path, tmp_path: Path) -> None:
    """The limit left (README "Limits"): dup2 onto the library's own fds at
    the top of the range fails with EBUSY, where the plain call succeeds;
    the library's ring survives it and the program's close still works."""
    stats = tmp_path / "s.json"
    plain = run(prog, "plain", ["dup2all"])
    assert plain.startswith("ebusy 0\n"), plain
    got = run(prog, executor, ["dup2all"], stats)
    assert got.splitlines()[1:] == plain.splitlines()[1:], got
    # sequential has no fd of its own; uring a ring before Linux 6.3 (since,
    # an eventfd only once sends park); lkm /dev/esca's
    own = executor == "lkm" or (executor == "uring" and ring_keeps_its_fd())
    assert (int(got.split()[1]) >= 1) == own, got
    assert deferred(stats, "write") > 0


@pytest.mark.parametrize("executor", executor_params(plain=True))
def test_open_before_the_library_starts(executor: str, tmp_path: Path) -> None:
    """A library preloaded after libesca.so opens a file in its constructor,
    which runs before libesca.so's: the open must work as plainly (it once
    called glibc's openat through a pointer resolved only at the library's
    start: a NULL call, the program killed by SIGSEGV before main)."""
    so = compile_c(PROGS / "open_ctor.c", tmp_path, "-shared", "-fPIC")
    out = tmp_path / "early.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCA_")}
    env["OPEN_CTOR_FILE"] = str(out)
    if executor == "plain":
        env["LD_PRELOAD"] = str(so)
    else:
        reason = executor_skip_reason(executor)
        if reason:
            pytest.skip(reason)
        env.update(LD_PRELOAD=f"{LIB} {so}", ESCA_EXECUTOR=executor)
    r = subprocess.run([sys.executable, "-c", "print('main')"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout) == (0, "main\n"), (r.returncode, r.stderr)
    assert out.read_text() == "early\n"
