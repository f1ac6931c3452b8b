"""What the preload defers, and what never (issue 12, defects 8, 10, 12;
DESIGN.md, "Deferral scope"): stream sockets only, never fds 0-2 nor an fd
a FILE is open on; every write it does not see (stdio, dprintf, sendmmsg,
splice, a child's) comes after the ones it deferred.  progs/scope.c runs
plainly and under each executor; the peer, the file or the program's
report must be the same, and the stats must show the library at work (so
each test fails in pass-through, ESCA_DISABLE=1)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import executor_params

import pyesca

PROG = Path(__file__).parent / "progs" / "scope.c"
LIB = Path(pyesca.__file__).parent / "libesca.so"


@pytest.fixture(scope="module")
def exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scope") / "scope"
    subprocess.run(
        ["cc", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O1", "-o", str(out), str(PROG)],
        check=True,
    )
    return out


def env_for(mode: str, stats: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCA_")}
    env.pop("LD_PRELOAD", None)
    if mode != "plain":
        env.update(LD_PRELOAD=str(LIB), ESCA_EXECUTOR=mode)
        # no watchdog: a write left pending stays pending until a trigger,
        # so a child or glibc writing first is seen every time
        env["ESCA_WATCHDOG_MS"] = "0"
        if stats is not None:
            env["ESCA_STATS"] = str(stats)
    env.update(extra)
    return env


def calls(stats: Path) -> dict[str, Any]:
    return dict(json.loads(stats.read_text())["syscalls"])


def peer_gets(exe: Path, mode: str, how: str, stats: Path | None) -> bytes:
    """Run `scope HOW FD` with FD one end of a socketpair (fd 1 for stdio);
    the bytes the other end got."""
    a, b = socket.socketpair()
    fd = a.fileno()
    stdio = how.startswith("stdio")
    try:
        p = subprocess.Popen(
            [str(exe), how, "1" if stdio else str(fd)],
            env=env_for(mode, stats),
            stdout=fd if stdio else subprocess.DEVNULL,
            pass_fds=(fd,),
        )
        a.close()
        b.settimeout(30)
        got = b""
        while chunk := b.recv(4096):
            got += chunk
        assert p.wait(timeout=30) == 0
        return got
    finally:
        a.close()
        b.close()


ORDERED = ["stdio", "stdio-dup", "fdopen", "fdopen-dup", "dprintf", "sendmmsg", "splice",
           "system", "popen", "spawn", "spawnp", "exit", "_exit", "exec"]


@pytest.mark.parametrize("mode", executor_params())
@pytest.mark.parametrize("how", ORDERED)
def test_unseen_writes_keep_order(exe: Path, tmp_path: Path, how: str, mode: str) -> None:
    """Defect 8: write(fd, "1"), then "2" by a way no deferring interposer
    sees, then write(fd, "3"): the peer gets 123 (12345 for fdopen; for
    exit and _exit, 1 and nothing after it)."""
    want = {"fdopen": b"12345", "exit": b"1", "_exit": b"1"}.get(how, b"123")
    assert peer_gets(exe, "plain", how, None) == want
    stats = tmp_path / "s.json"
    assert peer_gets(exe, mode, how, stats) == want
    write = calls(stats)["write"]
    if how == "exec":  # the stats are the shell's: its printf to fd 1
        assert write["passed"]["fd"] >= 1, write
        return
    assert write["deferred"] >= 1, write  # the library ran (and deferred)
    if how.startswith("stdio"):
        assert write["passed"]["fd"] >= 2, write  # fd 1 and its dups: never
    elif how == "fdopen-dup":
        assert write["passed"]["fd"] >= 1, write  # the dup, after fdopen
    elif how in ("fdopen", "dprintf", "sendmmsg", "splice"):
        assert write["deferred"] >= 2, write  # the "1" on the socket too


def run(exe: Path, mode: str, *args: str, stats: Path | None = None,
        **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(exe), *args], env=env_for(mode, stats, **extra), capture_output=True,
        text=True, timeout=60,
    )


@pytest.mark.parametrize("mode", executor_params())
def test_pwrite_after_write(exe: Path, tmp_path: Path, mode: str) -> None:
    """Defect 8 (files): write("AAAA"); pwrite("BB", 0) leaves BBAA.  Writes
    to a regular file are never deferred: the library saw the write and
    passed it through."""
    plain = run(exe, "plain", "pwrite", str(tmp_path / "plain"))
    assert plain.returncode == 0 and plain.stdout == "BBAA\n", plain
    stats = tmp_path / "s.json"
    got = run(exe, mode, "pwrite", str(tmp_path / "f"), stats=stats)
    assert got.returncode == 0 and got.stdout == plain.stdout, got
    write = calls(stats)["write"]
    assert write["passed"]["fd"] >= 1 and write["deferred"] == 1, write  # 1: the socket's


@pytest.mark.parametrize("mode", executor_params())
def test_short_write_to_a_file(exe: Path, tmp_path: Path, mode: str) -> None:
    """Defect 10: past RLIMIT_FSIZE (standing in for ENOSPC/EIO) a write is
    short, the next fails with EFBIG; fsync and close say what the kernel
    says.  Writes to files are never deferred, so nothing is reported full
    that was not written."""
    plain = run(exe, "plain", "fsize", str(tmp_path / "plain"))
    assert plain.returncode == 0, plain
    assert plain.stdout == "write 10 \nwrite -1 EFBIG\nfsync 0 \nclose 0 \n"
    stats = tmp_path / "s.json"
    got = run(exe, mode, "fsize", str(tmp_path / "f"), stats=stats)
    assert got.returncode == 0 and got.stdout == plain.stdout, got
    assert (tmp_path / "f").stat().st_size == 10
    write = calls(stats)["write"]
    assert write["passed"]["fd"] >= 2 and write["deferred"] == 1, write


@pytest.mark.parametrize("mode", executor_params())
def test_sendmsg_bad_msghdr(exe: Path, tmp_path: Path, mode: str) -> None:
    """Defect 12: the msghdr is read only for an fd the call may be deferred
    on, and a pointer that cannot be one goes to the kernel: ENOTSOCK on a
    pipe, /dev/null or stdout, EFAULT on a datagram socket or for a
    NULL-page or kernel-half msghdr or iovec array, EBADF on a closed fd,
    as plain."""
    plain = run(exe, "plain", "sendmsg")
    assert plain.returncode == 0, plain
    assert "ENOTSOCK" in plain.stdout and "EFAULT" in plain.stdout
    stats = tmp_path / "s.json"
    got = run(exe, mode, "sendmsg", stats=stats)
    assert got.returncode == 0 and got.stdout == plain.stdout, got
    sm = calls(stats)["sendmsg"]
    assert sm["deferred"] == 2, sm  # the two good ones
    assert sm["passed"]["fd"] >= 6 and sm["passed"]["args"] >= 3, sm


@pytest.mark.parametrize("mode", executor_params())
def test_sendmsg_unmapped_when_disabled(exe: Path, mode: str) -> None:
    """Defect 12: with ESCA_DISABLE=1 nothing is read: EFAULT, as plain."""
    plain = run(exe, "plain", "sendmsg-unmapped")
    assert plain.returncode == 0 and plain.stdout == "stream unmapped -1 EFAULT\n", plain
    got = run(exe, mode, "sendmsg-unmapped", ESCA_DISABLE="1")
    assert got.returncode == 0 and got.stdout == plain.stdout, got
    got = run(exe, mode, "sendmsg", ESCA_DISABLE="1")
    assert got.returncode == 0 and got.stdout == run(exe, "plain", "sendmsg").stdout


@pytest.mark.parametrize("mode", executor_params())
def test_sendmsg_unmapped_deferrable_faults(exe: Path, mode: str) -> None:
    """README, Limits: an unmapped (non-NULL, user-half) msghdr on a stream
    socket the call may be deferred on is read, and faults, as a buffer
    pointer does."""
    got = run(exe, mode, "sendmsg-unmapped")
    assert got.returncode == -signal.SIGSEGV, got
