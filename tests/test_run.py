"""`esca run`: argument handling, the environment it sets, exec semantics."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import pyesca.run

from pyesca import _core
from pyesca import run as esca_run

ESCA = [sys.executable, "-m", "pyesca.cli"]
LIB = esca_run.library_path({})
needs_lib = pytest.mark.skipif(not LIB.is_file(), reason=f"libesca.so not built ({LIB})")


def esca(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ESCA, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=cwd,
    )


def child_env(out: str) -> dict[str, str]:
    """The environment a child printed with `env -0`."""
    pairs = (kv.partition("=") for kv in out.split("\0") if kv)
    return {k: v for k, _, v in pairs}


def test_syscalls_names() -> None:
    assert esca_run.parse_syscalls("all") == "all"
    assert esca_run.parse_syscalls("seed") == "writev,send,sendfile,shutdown"
    seed_close = "write,writev,send,sendfile,shutdown,close"
    assert esca_run.parse_syscalls("close, write,seed") == seed_close
    assert esca_run.parse_syscalls(",".join(esca_run.SYSCALLS)) == "all"
    for bad in ("bogus", "", ",", "read", "write,readv"):
        with pytest.raises(esca_run.RunError):
            esca_run.parse_syscalls(bad)


def test_levers_names() -> None:
    assert esca_run.parse_levers("all") == "all"
    assert esca_run.parse_levers("none") == "none"
    assert esca_run.parse_levers("all,-compose") == "reads,sendfile,fold,adapt,plain"
    # a list that starts with -name takes it from the default set (it had
    # meant no lever at all, while README advises ESCA_LEVERS=-reads)
    assert esca_run.parse_levers("-compose") == "reads,sendfile,fold,adapt,plain"
    assert esca_run.parse_levers("-reads,+prefetch") == "compose,sendfile,fold,adapt,plain,prefetch"
    assert esca_run.parse_levers("sendfile, reads") == "reads,sendfile"
    assert esca_run.parse_levers("reads,-reads") == "none"
    default = [n for n in esca_run.LEVERS if n in esca_run.LEVERS_DEFAULT]
    assert esca_run.parse_levers(",".join(default)) == "all"
    # prefetch is on only when named: "+name" starts from the default set
    assert esca_run.LEVERS_OFF == {"prefetch"}
    assert esca_run.parse_levers("+prefetch") == "all,prefetch"
    assert esca_run.parse_levers("all,prefetch,-prefetch") == "all"
    assert esca_run.parse_levers(",".join(esca_run.LEVERS)) == "all,prefetch"
    # blanks around a name are dropped, as libesca drops them in ESCA_LEVERS
    # (one grammar: _core.parse_levers is native/preload/lists.h)
    assert esca_run.parse_levers(" -compose") == "reads,sendfile,fold,adapt,plain"
    assert esca_run.parse_levers("all, -compose ,") == "reads,sendfile,fold,adapt,plain"
    assert _core.parse_levers("all,-compose,bogus,+") == (
        ("reads", "sendfile", "fold", "adapt", "plain"),
        ("bogus", "+"),
    )
    for bad in ("bogus", "", ",", "all,-bogus", "+", "all,-"):
        with pytest.raises(esca_run.RunError):
            esca_run.parse_levers(bad)
    env = esca_run.build_env(
        esca_run.RunOptions(levers="all,-reads"), Path("/lib/x.so"), {}, 1
    )
    assert env["ESCA_LEVERS"] == "compose,sendfile,fold,adapt,plain"


def test_parse_size() -> None:
    assert esca_run.parse_size("65536") == 65536
    assert esca_run.parse_size("64K") == 64 << 10
    assert esca_run.parse_size("4MiB") == 4 << 20
    with pytest.raises(ValueError):
        esca_run.parse_size("lots")


def test_build_env_prepends_and_sets() -> None:
    opts = esca_run.RunOptions(
        executor="sequential",
        syscalls="seed",
        stats="rel/stats.json",
        flush_us=100,
        budget=1000,
        capacity=8,
        explicit_only=True,
        disable=True,
    )
    lib = Path("/x/libesca.so")
    env = esca_run.build_env(opts, lib, {"LD_PRELOAD": "/y/a.so", "ESCA_LIBRARY": "/z"}, 42)
    assert env["LD_PRELOAD"] == "/x/libesca.so:/y/a.so"
    assert "ESCA_LIBRARY" not in env
    assert env["ESCA_EXECUTOR"] == "sequential"
    assert env["ESCA_SYSCALLS"] == "writev,send,sendfile,shutdown"
    assert env["ESCA_STATS"] == os.path.abspath("rel/stats.json")
    assert env["ESCA_STATS_PID"] == "42"
    assert (env["ESCA_FLUSH_US"], env["ESCA_BUDGET"], env["ESCA_CAPACITY"]) == ("100", "1000", "8")
    assert env["ESCA_IMPLICIT"] == "0"
    assert env["ESCA_DISABLE"] == "1"
    plain = esca_run.build_env(esca_run.RunOptions(), lib, {}, 42)
    assert plain["LD_PRELOAD"] == "/x/libesca.so"
    assert not {"ESCA_STATS_PID", "ESCA_DISABLE", "ESCA_EXECUTOR"} & plain.keys()


@needs_lib
def test_exit_status_passed_through() -> None:
    p = esca("run", "--", "sh", "-c", "exit 7")
    assert p.returncode == 7, p.stderr


@needs_lib
def test_signal_passed_through() -> None:
    p = esca("run", "--", "sh", "-c", "kill -TERM $$")
    assert p.returncode == -signal.SIGTERM, p.stderr


@needs_lib
def test_signal_dispositions_as_plain() -> None:
    """CMD starts with the signal dispositions it has plainly: Python ignores
    SIGPIPE and SIGXFSZ, and exec kept them ignored, so every program under
    `esca run` got EPIPE where it dies of SIGPIPE plainly (an audit's
    pipe_sig: rc 0 against 141).  subprocess (restore_signals) is the plain
    run here."""
    argv = ["grep", "^SigIgn", "/proc/self/status"]
    plain = subprocess.run(argv, capture_output=True, text=True, check=True)
    for mode in ("--disable", "--executor=sequential"):
        r = esca("run", mode, "--", *argv)
        assert r.returncode == 0, r.stderr
        assert r.stdout == plain.stdout, (mode, r.stdout, plain.stdout)
    assert int(plain.stdout.split()[1], 16) & (1 << (signal.SIGPIPE - 1)) == 0


@needs_lib
def test_exec_keeps_pid_and_sets_env(tmp_path: Path) -> None:
    p = esca(
        "run",
        "--executor",
        "sequential",
        "--syscalls",
        "writev,close",
        "--stats",
        "s.json",
        "--flush-us",
        "250",
        "--budget",
        "64K",
        "--capacity",
        "16",
        "--",
        "sh",
        "-c",
        'echo "$$"; exec env -0',
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    pid, _, rest = p.stdout.partition("\n")
    env = child_env(rest)
    assert env["LD_PRELOAD"].split(":")[0] == str(LIB)
    assert env["ESCA_STATS_PID"] == pid  # esca exec'd sh: same process
    assert env["ESCA_STATS"] == str(tmp_path / "s.json")
    assert env["ESCA_EXECUTOR"] == "sequential"
    assert env["ESCA_SYSCALLS"] == "writev,close"
    assert (env["ESCA_FLUSH_US"], env["ESCA_BUDGET"], env["ESCA_CAPACITY"]) == (
        "250",
        str(64 << 10),
        "16",
    )
    assert "ESCA_DISABLE" not in env


@needs_lib
def test_ld_preload_is_prepended() -> None:
    # a library the loader has loaded anyway: preloading it changes nothing
    libc = Path("/lib/x86_64-linux-gnu/libc.so.6")
    if not libc.exists():
        pytest.skip(f"{libc} not here")
    env = dict(os.environ, LD_PRELOAD=str(libc))
    p = esca("run", "--", "sh", "-c", 'printf %s "$LD_PRELOAD"', env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"{LIB}:{libc}"


@needs_lib
def test_disable_sets_esca_disable() -> None:
    p = esca("run", "--disable", "--", "sh", "-c", 'printf %s "$ESCA_DISABLE"')
    assert (p.returncode, p.stdout) == (0, "1"), p.stderr


def test_missing_command() -> None:
    env = dict(os.environ, ESCA_LIBRARY=str(LIB) if LIB.is_file() else sys.executable)
    p = esca("run", "--", "no-such-command-esca", env=env)
    assert p.returncode == 127
    assert p.stderr == "esca: no-such-command-esca: command not found\n"


def test_no_command() -> None:
    p = esca("run")
    assert p.returncode == 2
    assert p.stderr.startswith("esca: ")


def test_setuid_refused(tmp_path: Path) -> None:
    exe = tmp_path / "true"
    shutil.copy("/bin/true", exe)
    exe.chmod(0o755 | stat.S_ISUID)
    env = dict(os.environ, ESCA_LIBRARY=sys.executable)  # any file: never loaded
    p = esca("run", "--", str(exe), env=env)
    assert p.returncode == 2
    assert p.stderr.startswith(f"esca: refusing to run setuid program {exe}")
    assert p.stderr.count("\n") == 1


def test_missing_library(tmp_path: Path) -> None:
    env = dict(os.environ, ESCA_LIBRARY=str(tmp_path))
    p = esca("run", "--", "true", env=env)
    assert p.returncode == 2
    assert p.stderr == (
        f"esca: libesca.so not found at {tmp_path / 'libesca.so'}; reinstall pyesca\n"
    )


def test_bogus_syscalls() -> None:
    p = esca("run", "--syscalls", "write,bogus", "--", "true")
    assert p.returncode == 2
    assert p.stderr.startswith("esca: --syscalls: unknown system call 'bogus'")
    assert p.stderr.count("\n") == 1


def test_bogus_options() -> None:
    for args in (
        ["--executor", "fast"],
        ["--capacity", "0"],
        ["--budget", "lots"],
        ["--levers", "fast"],
    ):
        p = esca("run", *args, "--", "true")
        assert p.returncode == 2, args
        assert p.stderr.startswith("esca: ") and p.stderr.count("\n") == 1, p.stderr


def test_out_of_range_options_refused(tmp_path: Path) -> None:
    """A value libesca would replace with a default (and a warning) is
    refused with one line and status 2, as the README promises for an
    invalid option; so is --stats in a directory that does not exist (the
    Python API's audit, session 10: they ran with exit 0)."""
    for args in (
        ["--capacity", "100000"],
        ["--capacity", "99999999999999999999"],
        ["--budget", "1"],
        ["--budget", "99999999999G"],
        ["--flush-us", "99999999999999999999"],
        ["--stats", str(tmp_path / "no" / "such" / "x.json")],
    ):
        p = esca("run", *args, "--", "true")
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        assert p.stderr.startswith("esca: ") and p.stderr.count("\n") == 1, p.stderr


@needs_lib
def test_option_range_ends_are_the_librarys(tmp_path: Path) -> None:
    """Both ends of each range (run.OPTION_RANGES) run without a word from
    libesca: the CLI and config.c agree."""
    for name, (lo, hi) in pyesca.run.OPTION_RANGES.items():
        for v in (lo, hi):
            p = esca("run", name, str(v), "--", "true")
            assert p.returncode == 0 and p.stderr == "", (name, v, p.stderr)


@needs_lib
def test_stale_stats_removed(tmp_path: Path) -> None:
    stats = tmp_path / "s.json"
    for p in (stats, tmp_path / "s.json.123", tmp_path / "s.json.keep"):
        p.write_text("{}")
    p = esca("run", "--stats", str(stats), "--", "true")
    assert p.returncode == 0, p.stderr
    assert not (tmp_path / "s.json.123").exists()
    assert (tmp_path / "s.json.keep").exists()
