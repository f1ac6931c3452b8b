"""Security (issue 5, part 5): setuid/setgid targets refused by `esca run`;
the stats file never written through a link planted at its path, mode 0600;
garbage in ESCA_* variables refused or clamped with one line, never a crash.
The io_uring allow-list is checked in C (native/tests/test_core.c,
uring_allow_list)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import pyesca

LIB = Path(pyesca.__file__).parent / "libesca.so"
ESCA = [sys.executable, "-m", "pyesca"]


def clean_env(**kw: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCA_")}
    env.pop("LD_PRELOAD", None)
    env.update(kw)
    return env


@pytest.mark.parametrize("bits,what", [(stat.S_ISUID, "setuid"), (stat.S_ISGID, "setgid")])
@pytest.mark.parametrize("how", ["path", "PATH", "symlink"])
def test_setuid_setgid_refused(tmp_path: Path, bits: int, what: str, how: str) -> None:
    exe = tmp_path / "prog"
    shutil.copy("/bin/true", exe)
    exe.chmod(0o755 | bits)
    env = clean_env(PATH=f"{tmp_path}:{os.environ.get('PATH', '')}")
    target = str(exe)
    if how == "PATH":
        target = "prog"
    elif how == "symlink":
        (tmp_path / "link").symlink_to(exe)
        target = str(tmp_path / "link")
    p = subprocess.run([*ESCA, "run", "--", target], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith(f"esca: refusing to run {what} program "), p.stderr
    assert p.stderr.count("\n") == 1


VICTIM = b"someone else's file\n"


def run_with_stats(stats: Path, code: str, *, umask: int = 0) -> None:
    env = clean_env(LD_PRELOAD=str(LIB), ESCA_STATS=str(stats))
    p = subprocess.run([sys.executable, "-c", f"import os\nos.umask({umask})\n{code}"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def assert_stats_file(path: Path) -> None:
    st = path.lstat()
    assert stat.S_ISREG(st.st_mode), path
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert json.loads(path.read_text())["version"] == 1


def test_stats_mode_0600_whatever_the_umask(tmp_path: Path) -> None:
    stats = tmp_path / "s.json"
    run_with_stats(stats, "os.write(1, b'')", umask=0)
    assert_stats_file(stats)


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_stats_not_written_through_link_at_path(tmp_path: Path, link: str) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM)
    victim.chmod(0o644)
    stats = tmp_path / "s.json"
    if link == "symlink":
        stats.symlink_to(victim)
    else:
        os.link(victim, stats)
    run_with_stats(stats, "pass")
    assert victim.read_bytes() == VICTIM
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert_stats_file(stats)  # the link was replaced, not followed


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_stats_not_written_through_link_at_tmp(tmp_path: Path, link: str) -> None:
    """The library writes PATH.tmp.<pid> and renames it: a link planted
    there (by the program itself here, so the pid is known) is not
    followed and the stats still arrive."""
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM)
    stats = tmp_path / "s.json"
    make = "os.symlink" if link == "symlink" else "os.link"
    run_with_stats(stats, f"{make}({str(victim)!r}, {str(stats)!r} + f'.tmp.{{os.getpid()}}')")
    assert victim.read_bytes() == VICTIM
    assert_stats_file(stats)
    assert not list(tmp_path.glob("s.json.tmp.*"))


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_stats_not_written_through_link_at_pid_path(tmp_path: Path, link: str) -> None:
    """A forked child writes PATH.<pid>: links planted at PATH.<pid> and at
    PATH.<pid>.tmp.<pid> (by the child, which knows its pid) are not
    followed."""
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM)
    stats = tmp_path / "s.json"
    make = "os.symlink" if link == "symlink" else "os.link"
    code = (
        "pid = os.fork()\n"
        "if pid == 0:\n"
        f"    base = {str(stats)!r} + f'.{{os.getpid()}}'\n"
        f"    {make}({str(victim)!r}, base)\n"
        f"    {make}({str(victim)!r}, base + f'.tmp.{{os.getpid()}}')\n"
        "    os.write(1, b'child\\n')\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        f"open({str(tmp_path / 'child')!r}, 'w').write(str(pid))\n"
    )
    run_with_stats(stats, code)
    child = (tmp_path / "child").read_text()
    assert victim.read_bytes() == VICTIM
    assert_stats_file(stats)
    assert_stats_file(tmp_path / f"s.json.{child}")


GARBAGE = [
    ("ESCA_CAPACITY", "-1", "out of range|not a number"),
    ("ESCA_CAPACITY", "0", "out of range"),
    ("ESCA_CAPACITY", "99999999999999999999999", "not a number"),
    ("ESCA_CAPACITY", "12abc", "not a number"),
    ("ESCA_BUDGET", "-5", "not a number"),
    ("ESCA_BUDGET", "0", "out of range"),
    ("ESCA_BUDGET", "1000000000000000", "out of range"),
    ("ESCA_FLUSH_US", "18446744073709551615", "out of range"),
    ("ESCA_FLUSH_US", " 5", "not a number"),
    ("ESCA_WATCHDOG_MS", "18446744073709551", "out of range"),
    ("ESCA_STATS_INTERVAL_MS", "+3", "not a number"),
    ("ESCA_TIMER_SIGNAL", "9", "out of range"),
    ("ESCA_TIMER_SIGNAL", "11", "out of range"),
    ("ESCA_TIMER_SIGNAL", "1000", "out of range"),
    ("ESCA_STATS_PID", "x", "not a number"),
    ("ESCA_EXECUTOR", "fast", "unknown ESCA_EXECUTOR"),
    ("ESCA_SYSCALLS", "write,bogus", "unknown syscall 'bogus'"),
    ("ESCA_STATS", "/" + "x" * 5000, "too long"),
]

# writes, a sleep past the flush bound (the watchdog), a fork: the bytes
# must come out in order whatever the variables said
PROGRAM = (
    "import os, socket, time\n"
    "a, b = socket.socketpair()\n"
    "for i in range(50):\n"
    "    a.send(b'%d,' % i)\n"
    "os.write(1, b'start ')\n"
    "time.sleep(0.02)\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os._exit(0)\n"
    "os.waitpid(pid, 0)\n"
    "a.close()\n"
    "got = b''\n"
    "while True:\n"
    "    c = b.recv(65536)\n"
    "    if not c:\n"
    "        break\n"
    "    got += c\n"
    "os.write(1, b'ok' if got == b''.join(b'%d,' % i for i in range(50)) else got)\n"
)


@pytest.mark.parametrize("name,value,message", GARBAGE)
def test_env_garbage_one_line(name: str, value: str, message: str) -> None:
    env = clean_env(LD_PRELOAD=str(LIB), **{name: value})
    p = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "start ok"
    lines = p.stderr.splitlines()
    # the parent says it once (the forked child inherits the parsed values)
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("esca: ") and name in lines[0], lines[0]
    assert any(m in lines[0] for m in message.split("|")), lines[0]


def test_env_garbage_quiet() -> None:
    env = clean_env(LD_PRELOAD=str(LIB), ESCA_QUIET="1", ESCA_CAPACITY="-1")
    p = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True,
                       text=True, timeout=60)
    assert (p.returncode, p.stdout, p.stderr) == (0, "start ok", "")
