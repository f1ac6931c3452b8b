"""`esca run`: run a program with libesca.so preloaded.

    esca run [--executor E] [--syscalls LIST] [--stats PATH] [--flush-us N]
             [--budget BYTES] [--capacity N] [--explicit-only] [--disable] -- CMD ...

The options become the library's environment (ESCA_*), libesca.so is
prepended to LD_PRELOAD, and CMD replaces this process (execve), so its exit
status and the signal that kills it are CMD's own, and its pid is the one
`ESCA_STATS_PID` names.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from pyesca import _core

PROG = "esca"


class Syscall(NamedTuple):
    """A call libesca.so can defer (catalog.h ESCA_SYSCALLS)."""

    name: str
    seed: bool  # one of the seed's four wrappers (`--syscalls seed`)
    where: str  # the fds it is deferred on


# The lists libesca.so is made of, from the native core (never copied here).
SYSCALL_ROWS: tuple[Syscall, ...] = tuple(Syscall(*row) for row in _core.syscalls())
# The calls libesca.so can defer, in the library's order.
SYSCALLS: tuple[str, ...] = tuple(s.name for s in SYSCALL_ROWS)
# The seed's four wrappers.
SEED: tuple[str, ...] = tuple(s.name for s in SYSCALL_ROWS if s.seed)
# Every executor name ESCA_EXECUTOR accepts, "auto" first.
EXECUTORS: tuple[str, ...] = _core.executor_names()
# The levers beyond ESCA (libesca's ESCA_LEVERS), each one switchable: name -> help.
LEVERS: dict[str, str] = dict(_core.levers())
# Those on only when named (`+prefetch`, `all,prefetch`); "all" is the rest.
LEVERS_OFF: frozenset[str] = frozenset(_core.levers_off())
LEVERS_DEFAULT: frozenset[str] = frozenset(LEVERS) - LEVERS_OFF

# Overrides where libesca.so is looked for: a file, or a directory holding it.
LIBRARY_ENV = "ESCA_LIBRARY"
LIBRARY_NAME = "libesca.so"

# Exit statuses, as a shell reports them.
EXIT_USAGE = 2
EXIT_CANNOT_EXEC = 126
EXIT_NOT_FOUND = 127


class RunError(Exception):
    """A reason not to run CMD: one line for stderr, and the exit status."""

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class RunOptions:
    executor: str | None = None
    syscalls: str | None = None
    levers: str | None = None
    stats: str | None = None
    flush_us: int | None = None
    budget: int | None = None
    capacity: int | None = None
    explicit_only: bool = False
    disable: bool = False


def library_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where libesca.so is: next to the installed package, or $ESCA_LIBRARY."""
    env = os.environ if environ is None else environ
    override = env.get(LIBRARY_ENV)
    if override:
        p = Path(override)
        if p.is_dir():
            p = p / LIBRARY_NAME
        return p.absolute()
    import pyesca

    return Path(pyesca.__file__).resolve().parent / LIBRARY_NAME


def parse_syscalls(text: str) -> str:
    """Validate a comma list of names (or `all`, `seed`); its canonical form."""
    chosen: set[str] = set()
    names = [n.strip() for n in text.split(",")]
    if not any(names):
        raise RunError("--syscalls: empty list")
    for name in names:
        if name == "all":
            chosen.update(SYSCALLS)
        elif name == "seed":
            chosen.update(SEED)
        elif name in SYSCALLS:
            chosen.add(name)
        elif name:
            raise RunError(
                f"--syscalls: unknown system call {name!r}"
                f" (choose from {', '.join(SYSCALLS)}, all, seed)"
            )
    if chosen == set(SYSCALLS):
        return "all"
    return ",".join(n for n in SYSCALLS if n in chosen)


def help_tables() -> str:
    """The deferrable calls and the levers, as `esca run --help` shows them."""
    width = max(len(n) for n in (*SYSCALLS, *LEVERS)) + 2
    lines = ["deferrable calls (--syscalls; * in the seed set, 'seed'):"]
    lines += [f"  {s.name:<{width}}{'*' if s.seed else ' '} {s.where}" for s in SYSCALL_ROWS]
    lines.append("levers beyond ESCA (--levers):")
    lines += [f"  {name:<{width}}  {about}" for name, about in LEVERS.items()]
    return "\n".join(lines)


def parse_levers(text: str) -> str:
    """Validate `all` (the default set: every lever but those on only when
    named), `none` or a comma list of lever names, where `-name` takes one
    away (`all,-compose`) and `+name` adds one (a list starting with `+name`
    or `-name` starts from the default set: `+prefetch`, `-reads`); its
    canonical form.  The grammar is libesca's own (`_core.parse_levers`,
    native/preload/lists.h): the list means here what ESCA_LEVERS means."""
    if not any(n.strip() for n in text.split(",")):
        raise RunError("--levers: empty list (use 'none' for no lever)")
    on, unknown = _core.parse_levers(text)
    if unknown:
        raise RunError(
            f"--levers: unknown lever {unknown[0]!r}"
            f" (choose from {', '.join(LEVERS)}, all, none; -name, +name)"
        )
    chosen = set(on)
    if chosen == set(LEVERS_DEFAULT):
        return "all"
    if chosen >= LEVERS_DEFAULT:
        return ",".join(["all", *(n for n in LEVERS if n in chosen - LEVERS_DEFAULT)])
    return ",".join(n for n in LEVERS if n in chosen) or "none"


_SIZE = re.compile(r"(\d+)\s*([kKmMgG]?)(i?[bB])?")
_UNIT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int:
    """Bytes: `65536`, `64K`, `4M`, `1GiB` (binary units)."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not a size: {text!r}")
    return int(m.group(1)) * _UNIT[m.group(2).lower()]


def resolve_command(cmd: str, path: str | None = None) -> str:
    """The executable CMD names, as execvp would find it, or RunError."""
    if "/" in cmd:
        if not os.path.exists(cmd):
            raise RunError(f"{cmd}: No such file or directory", EXIT_NOT_FOUND)
        if os.path.isdir(cmd) or not os.access(cmd, os.X_OK):
            raise RunError(f"{cmd}: Permission denied", EXIT_CANNOT_EXEC)
        return cmd
    found = shutil.which(cmd, path=path)
    if found is None:
        raise RunError(f"{cmd}: command not found", EXIT_NOT_FOUND)
    return found


def check_not_setuid(exe: str) -> None:
    """The dynamic loader ignores LD_PRELOAD for setuid/setgid programs."""
    mode = os.stat(exe).st_mode
    for bit, what in ((stat.S_ISUID, "setuid"), (stat.S_ISGID, "setgid")):
        if mode & bit:
            raise RunError(
                f"refusing to run {what} program {exe}:"
                " the dynamic loader ignores LD_PRELOAD for it"
            )


def stale_stats_files(stats: Path) -> list[Path]:
    """Stats files an earlier run left at PATH and PATH.<pid>."""
    out: list[Path] = []
    if stats.is_file():
        out.append(stats)
    try:
        entries = list(stats.parent.iterdir())
    except OSError:
        return out
    prefix = stats.name + "."
    for p in entries:
        if p.name.startswith(prefix) and p.name[len(prefix) :].isdigit() and p.is_file():
            out.append(p)
    return out


def build_env(
    opts: RunOptions,
    lib: Path,
    environ: Mapping[str, str],
    pid: int,
) -> dict[str, str]:
    """The environment CMD runs with."""
    env = dict(environ)
    env.pop(LIBRARY_ENV, None)
    old = env.get("LD_PRELOAD", "")
    env["LD_PRELOAD"] = f"{lib}:{old}" if old else str(lib)
    if opts.executor is not None:
        env["ESCA_EXECUTOR"] = opts.executor
    if opts.syscalls is not None:
        env["ESCA_SYSCALLS"] = parse_syscalls(opts.syscalls)
    if opts.levers is not None:
        env["ESCA_LEVERS"] = parse_levers(opts.levers)
    if opts.stats is not None:
        env["ESCA_STATS"] = os.path.abspath(opts.stats)
    if env.get("ESCA_STATS"):
        # the process exec'd is this one: its stats go to PATH itself
        env["ESCA_STATS_PID"] = str(pid)
    if opts.flush_us is not None:
        env["ESCA_FLUSH_US"] = str(opts.flush_us)
    if opts.budget is not None:
        env["ESCA_BUDGET"] = str(opts.budget)
    if opts.capacity is not None:
        env["ESCA_CAPACITY"] = str(opts.capacity)
    if opts.explicit_only:
        env["ESCA_IMPLICIT"] = "0"
    if opts.disable:
        env["ESCA_DISABLE"] = "1"
    return env


# What libesca accepts (native/preload/config.c, env_num's bounds for
# ESCA_FLUSH_US, ESCA_BUDGET, ESCA_CAPACITY); tests/test_run.py checks both
# ends against the library.
OPTION_RANGES: dict[str, tuple[int, int]] = {
    "--flush-us": (0, 60_000_000),
    "--budget": (16, 1 << 30),
    "--capacity": (1, 32768),
}


def prepare(
    opts: RunOptions, argv: Sequence[str], environ: Mapping[str, str] | None = None
) -> tuple[str, list[str], dict[str, str]]:
    """Everything short of exec: (executable, argv, env), or RunError."""
    env_in = os.environ if environ is None else environ
    if not argv:
        raise RunError("run: no command given (esca run [OPTIONS] -- CMD ...)")
    if opts.syscalls is not None:
        parse_syscalls(opts.syscalls)
    if opts.levers is not None:
        parse_levers(opts.levers)
    for name, value in (
        ("--flush-us", opts.flush_us),
        ("--budget", opts.budget),
        ("--capacity", opts.capacity),
    ):
        lo, hi = OPTION_RANGES[name]
        if value is not None and not lo <= value <= hi:
            # libesca would say so, use a default and run on: refused here
            raise RunError(f"{name}: {value} is out of range [{lo}, {hi}]")
    if opts.stats is not None:
        parent = Path(os.path.abspath(opts.stats)).parent
        if not parent.is_dir():
            raise RunError(f"--stats: {parent}: no such directory")
    lib = library_path(env_in)
    if not lib.is_file():
        raise RunError(f"{LIBRARY_NAME} not found at {lib}; reinstall pyesca")
    exe = resolve_command(argv[0], env_in.get("PATH", os.defpath))
    check_not_setuid(exe)
    env = build_env(opts, lib, env_in, os.getpid())
    return exe, list(argv), env


def run(opts: RunOptions, argv: Sequence[str]) -> int:
    """Exec CMD under libesca.so; returns only on failure (an exit status)."""
    try:
        exe, args, env = prepare(opts, argv)
    except RunError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.status
    if env.get("ESCA_STATS"):
        for p in stale_stats_files(Path(env["ESCA_STATS"])):
            try:
                p.unlink()
            except OSError:
                pass
    sys.stdout.flush()
    sys.stderr.flush()
    restore_signals()
    try:
        os.execve(exe, args, env)
    except OSError as exc:
        print(f"{PROG}: {argv[0]}: {exc.strerror}", file=sys.stderr)
        return EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else EXIT_CANNOT_EXEC
    raise AssertionError("unreachable")


# Python ignores these at start-up, and an ignored signal stays ignored
# across exec: CMD would get EPIPE where it dies of SIGPIPE plainly (an
# audit found `esca run` did so to every program).  subprocess restores the
# same ones (restore_signals=True).
RESTORED_SIGNALS = tuple(
    getattr(signal, n) for n in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, n)
)


def restore_signals() -> None:
    """The default disposition of the signals Python ignores, before exec."""
    for sig in RESTORED_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
