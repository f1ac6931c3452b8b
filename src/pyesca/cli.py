"""The `esca` command.

    esca doctor [--json]    can pyesca batch through io_uring here?

`run`, `bench` and `stats` come later.  Messages go to stderr prefixed
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
