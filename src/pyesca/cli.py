"""The `esca` command.

    esca doctor [--json]        can pyesca batch through io_uring here?
    esca run [OPTIONS] -- CMD   run CMD with libesca.so preloaded
    esca stats PATH [--json]    the counters `esca run --stats PATH` wrote

`bench` comes later.  Messages go to stderr prefixed
`esca: `; `main()` returns the exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import NoReturn

PROG = "esca"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line `esca: ...` errors instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: {message} (see '{self.prog} --help')\n")


def _cmd_doctor(args: argparse.Namespace) -> int:
    from pyesca import doctor  # lazy: imports the extension

    report = doctor.gather()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        print(doctor.format_text(report))
    problem = report.problem()
    if problem is not None:
        if report.core_error is None:
            problem = f"only the sequential executor is available: {problem}"
        print(f"{PROG}: {problem}", file=sys.stderr)
    return report.exit_status


def _cmd_run(args: argparse.Namespace) -> int:
    from pyesca import run

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    opts = run.RunOptions(
        executor=args.executor,
        syscalls=args.syscalls,
        stats=args.stats,
        flush_us=args.flush_us,
        budget=args.budget,
        capacity=args.capacity,
        explicit_only=args.explicit_only,
        disable=args.disable,
    )
    return run.run(opts, cmd)


def _cmd_stats(args: argparse.Namespace) -> int:
    from pyesca import stats

    try:
        report = stats.load(args.path)
    except stats.StatsError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{PROG}: {args.path}: {exc.strerror}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(stats.format_text(report))
    return 0


def _size(text: str) -> int:
    from pyesca.run import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="pyesca: ESCA-style system call batching for Linux.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    doc = sub.add_parser(
        "doctor",
        help="check io_uring support and which executor pyesca uses here",
        description=(
            "Report the kernel, io_uring sysctl and seccomp state, the io_uring probe, "
            "and which executor 'auto' picks and why. Exit status 0 when the uring "
            "executor is usable, 1 when only sequential is."
        ),
    )
    doc.add_argument("--json", action="store_true", help="print the report as JSON")
    doc.set_defaults(func=_cmd_doctor)

    from pyesca.run import EXECUTORS

    run = sub.add_parser(
        "run",
        help="run a program with libesca.so preloaded",
        usage="%(prog)s [OPTIONS] -- CMD [ARG ...]",
        description=(
            "Run CMD with libesca.so preloaded: its writes, sends, sendfiles, shutdowns,"
            " closes and setsockopts are batched and flushed at its event-loop waits."
            " CMD replaces esca (exec): the exit status and signals are its own."
        ),
    )
    run.add_argument(
        "--executor",
        choices=EXECUTORS,
        help="executor of the batch tables (default: auto = uring where usable)",
    )
    run.add_argument(
        "--syscalls",
        metavar="LIST",
        help="comma list of calls to defer, or 'all' (default) or 'seed'"
        " (writev,send,sendfile,shutdown)",
    )
    run.add_argument("--stats", metavar="PATH", help="write the library's counters to PATH")
    run.add_argument(
        "--flush-us",
        type=int,
        metavar="N",
        help="longest time in microseconds a deferred call may wait",
    )
    run.add_argument("--budget", type=_size, metavar="BYTES", help="bytes a table may hold")
    run.add_argument("--capacity", type=int, metavar="N", help="entries a table may hold")
    run.add_argument(
        "--explicit-only",
        action="store_true",
        help="batch only within explicit batch_start()/batch_flush() segments",
    )
    run.add_argument(
        "--disable", action="store_true", help="preload the library as a pass-through"
    )
    run.add_argument("cmd", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    run.set_defaults(func=_cmd_run)

    st = sub.add_parser(
        "stats",
        help="show the counters written by 'esca run --stats PATH'",
        description=(
            "Read PATH and the PATH.<pid> files of forked processes and show, per process"
            " and in total, the calls seen, deferred and passed through, the flushes by"
            " trigger, the mean batch size, the kernel entries made and saved, short"
            " writes completed, errors and fallbacks."
        ),
    )
    st.add_argument("path", metavar="PATH")
    st.add_argument("--json", action="store_true", help="print the report as JSON")
    st.set_defaults(func=_cmd_stats)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already reported
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except OSError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
