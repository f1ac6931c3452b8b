"""The `esca` command.

    esca doctor [--json]        can pyesca batch through io_uring here?
    esca run [OPTIONS] -- CMD   run CMD with libesca.so preloaded
    esca stats PATH [--json]    the counters `esca run --stats PATH` wrote
    esca bench [OPTIONS]        the seed's experiment: wrk against a server,
                                with and without pyesca, side by side
    esca loadcheck URL ...      a load client that checks every body's sha256

Messages go to stderr prefixed `esca: `; `main()` returns the exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

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
        levers=args.levers,
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
        print(stats.format_text(report, args.requests))
    return 0


def _int_list(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma list of numbers: {text!r}") from exc
    if not out:
        raise argparse.ArgumentTypeError("empty list")
    return out


def _size_list(text: str) -> tuple[int, ...]:
    out = tuple(_size(x) for x in text.split(",") if x.strip())
    if not out:
        raise argparse.ArgumentTypeError("empty list")
    return out


def _seconds(text: str) -> int:
    t = text.strip().removesuffix("s")
    if not t.isdigit():
        raise argparse.ArgumentTypeError(f"whole seconds, like 5 or 5s: {text!r}")
    return int(t)


# What --quick changes, where the option is not given.
_QUICK = {"rounds": 1, "duration": 2, "perf_seconds": 1}
_DEFAULTS = {"rounds": 3, "duration": 5, "perf_seconds": 2}


def _cmd_bench(args: argparse.Namespace) -> int:
    import shlex

    from pyesca.bench import report, runner
    from pyesca.bench.servers import CONFIGS

    def fail(message: str, status: int = 2) -> int:
        print(f"{PROG} bench: {message}", file=sys.stderr)
        return status

    if args.from_json:
        return _bench_from_json(args.from_json, args.markdown)
    config = args.config or args.server or "lighttpd"
    if args.config and args.server and args.config != args.server:
        return fail(f"--server {args.server} and --config {args.config}: give one")
    page = CONFIGS[config].index_page
    if page and args.size is not None:
        return fail(
            f"--size: {config} serves its own {len(page[1])} B page ({page[0]}) at /"
        )
    base = _QUICK if args.quick else _DEFAULTS
    if args.modes == "ablation":
        args.modes = ",".join(runner.ABLATION_MODES)
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    try:
        extra = [runner.env_mode(spec) for spec in args.env_mode]
    except runner.BenchError as exc:
        return fail(str(exc), exc.status)
    for m in extra:
        runner.MODES[m.name] = m
        if m.name not in modes:
            modes = (*modes, m.name)
    if args.executor == "sequential" and "esca-seq" not in modes:
        modes = (*modes, "esca-seq")
    cfg = runner.BenchConfig(
        config=config,
        modes=modes,
        rounds=args.rounds if args.rounds is not None else base["rounds"],
        duration=args.duration if args.duration is not None else base["duration"],
        warmup=args.warmup,
        perf_seconds=(args.perf_seconds if args.perf_seconds is not None else base["perf_seconds"]),
        threads=args.threads,
        connections=args.connections,
        sizes=args.size if args.size is not None else (20 << 10,),
        pin=not args.no_pin,
    )
    try:
        cfg.check()
        if args.plot and (why := report.plot_available()):
            raise runner.BenchError(why)
        result = runner.run(cfg)
    except runner.BenchError as exc:
        return fail(str(exc), exc.status)
    argv = sys.argv[1:] if args.argv is None else args.argv
    result.command = "esca " + shlex.join(argv)
    print(report.format_text(result), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report.to_json(result), f, indent=2)
            f.write("\n")
        print(f"{PROG}: wrote {args.json}", file=sys.stderr)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(report.format_markdown(result))
        print(f"{PROG}: wrote {args.markdown}", file=sys.stderr)
    if args.plot and result.records:
        report.plot(result, args.plot)
        print(f"{PROG}: wrote {args.plot}", file=sys.stderr)
    if result.interrupted:
        return 130
    flagged = [m.mode for c in report.summarise(result) for m in c.modes if m.flagged]
    if flagged:
        print(
            f"{PROG}: errors or problems in mode(s) {', '.join(sorted(set(flagged)))}:"
            " see the lines marked !",
            file=sys.stderr,
        )
        return 1
    return 0


def _bench_from_json(path: str, markdown: str | None) -> int:
    """`esca bench --from JSON`: the markdown tables of a saved run."""
    from pyesca.bench import report

    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        print(f"{PROG} bench: --from {path}: {exc}", file=sys.stderr)
        return 2
    if not isinstance(data, dict) or data.get("schema") != report.SCHEMA:
        print(
            f"{PROG} bench: --from {path}: not esca bench --json output of schema"
            f" {report.SCHEMA}",
            file=sys.stderr,
        )
        return 2
    text = report.format_markdown_json(data, source=path)
    if markdown:
        with open(markdown, "w") as f:
            f.write(text)
        print(f"{PROG}: wrote {markdown}", file=sys.stderr)
    else:
        print(text)
    return 0


def _size(text: str) -> int:
    from pyesca.run import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _add_run(sub: Any) -> None:
    """`esca run`: its options and the tables of what it defers."""
    import textwrap

    from pyesca.run import EXECUTORS, LEVERS, SEED, SYSCALLS, help_tables

    run = sub.add_parser(
        "run",
        help="run a program with libesca.so preloaded",
        usage="%(prog)s [OPTIONS] -- CMD [ARG ...]",
        description=textwrap.fill(
            f"Run CMD with libesca.so preloaded: its {', '.join(SYSCALLS[:-1])} and"
            f" {SYSCALLS[-1]} calls are batched and flushed at its event-loop waits."
            " CMD replaces esca (exec): the exit status and signals are its own."
        ),
        epilog=help_tables(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--executor",
        choices=EXECUTORS,
        help="executor of the batch tables (default: auto = the first of lkm, uring,"
        " sequential that can be set up)",
    )
    run.add_argument(
        "--syscalls",
        metavar="LIST",
        help="comma list of calls to defer (below), or 'all' (default) or 'seed'"
        f" ({','.join(SEED)})",
    )
    run.add_argument(
        "--levers",
        metavar="LIST",
        help="the levers beyond ESCA: 'all' (default), 'none', or a comma list of "
        + ", ".join(LEVERS)
        + f" (below); '-name' takes one away: all,-{next(iter(LEVERS))}",
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
    run.add_argument("--disable", action="store_true", help="preload the library as a pass-through")
    run.add_argument("cmd", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    run.set_defaults(func=_cmd_run)


def _add_stats(sub: Any) -> None:
    """`esca stats`."""
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
    st.add_argument(
        "--requests",
        type=int,
        default=0,
        metavar="N",
        help="requests served while the counters ran (wrk's count): adds per-request columns",
    )
    st.set_defaults(func=_cmd_stats)


def _add_bench(sub: Any) -> None:
    """`esca bench`: its modes come from pyesca.bench.runner."""
    import textwrap

    from pyesca.bench.runner import DEFAULT_MODES, MODES
    from pyesca.bench.servers import CONFIGS

    width = max(len(c) for c in CONFIGS) + 2
    configs = "\n".join(
        textwrap.fill(
            c.about,
            width=79,
            initial_indent=f"  {c.name:<{width}}",
            subsequent_indent=" " * (width + 2),
        )
        for c in CONFIGS.values()
    )
    be = sub.add_parser(
        "bench",
        help="the seed's experiment: wrk against lighttpd/nginx with and without pyesca",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="configs (--config NAME):\n" + configs,
        description=textwrap.fill(
            "Start the server from a generated config on 127.0.0.1 (a fresh process per run),"
            " pinned to one CPU and wrk to the others (unless --no-pin), and run wrk against"
            " it in each mode,"
            " the modes interleaved round by round. Reports per mode the median and min-max"
            " of requests/s and transfer/s, wrk's latency line, socket errors and non-2xx"
            " responses (a mode with any is flagged), the ratio to vanilla, kernel entries"
            " per request (perf stat -e raw_syscalls:sys_enter, in a separate wrk run) and"
            " the interposer's counters. It measures what a kernel entry costs here (a C"
            " loop of getppid) and prints, per mode, the share of vanilla's server CPU per"
            " request its kernel entries account for beside the CPU it saved: the ceiling"
            " on this machine. Modes: "
            + "; ".join(f"{m.name}: {m.about}" for m in MODES.values())
            + ". Exit status 0, 1 when a mode had errors, 2 on a bad option or a missing"
            " server binary or wrk.",
            width=79,
        ),
    )
    be.add_argument(
        "--config",
        choices=tuple(CONFIGS),
        metavar="NAME",
        help="the server configuration (default lighttpd; listed below)",
    )
    be.add_argument(
        "--server",
        choices=("lighttpd", "nginx", "asyncio"),
        help="the minimal config of that server: --config lighttpd, nginx or asyncio",
    )
    be.add_argument(
        "--from",
        dest="from_json",
        metavar="JSON",
        help="run nothing: print (or --markdown PATH: write) the markdown tables of a"
        " saved --json output, saying which file and command produced them",
    )
    be.add_argument(
        "--modes",
        default=",".join(DEFAULT_MODES),
        metavar="LIST",
        help=f"comma list of {', '.join(MODES)} (default {','.join(DEFAULT_MODES)}), or"
        " 'ablation': vanilla, seed, esca-base, esca without each lever, esca",
    )
    be.add_argument(
        "--env-mode",
        action="append",
        default=[],
        metavar="NAME:VAR=V[,VAR=V]",
        help="one more mode: esca with these ESCA_* variables in its environment, run"
        " interleaved with the others (repeatable), e.g. --env-mode"
        " aside:ESCA_ADAPT_TEST=aside: an A/B of a setting against the same vanilla rounds",
    )
    be.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the server and wrk to CPUs (the default pins the server to the"
        " first CPU and wrk to the others)",
    )
    be.add_argument(
        "--executor",
        choices=("sequential",),
        help="sequential: also run esca-seq, esca's set under the sequential executor"
        " (a control that should show no gain)",
    )
    be.add_argument("--rounds", type=int, metavar="N", help="rounds per mode (default 3)")
    be.add_argument(
        "--duration", type=_seconds, metavar="S", help="seconds of the measured wrk run (default 5)"
    )
    be.add_argument(
        "--warmup",
        type=_seconds,
        default=1,
        metavar="S",
        help="seconds of the warm-up wrk run before it (default 1; 0: none)",
    )
    be.add_argument(
        "--perf-seconds",
        type=_seconds,
        metavar="S",
        help="seconds of the wrk run perf counts kernel entries in (default 2; 0: do not count)",
    )
    be.add_argument(
        "--connections",
        type=_int_list,
        default=(50,),
        metavar="LIST",
        help="wrk -c: comma list of connection counts (default 50)",
    )
    be.add_argument("--threads", type=int, default=4, metavar="N", help="wrk -t (default 4)")
    be.add_argument(
        "--size",
        type=_size_list,
        metavar="LIST",
        help="comma list of file sizes in bytes (20K, 1M understood; default 20480, the"
        " seed's a20.html)",
    )
    be.add_argument("--json", metavar="PATH", help="write every number as JSON")
    be.add_argument("--plot", metavar="PATH", help="write a PNG bar chart (needs matplotlib)")
    be.add_argument("--markdown", metavar="PATH", help="write the table as markdown")
    be.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 round, 2 s measured, 1 s counted (under a minute)",
    )
    be.set_defaults(func=_cmd_bench, argv=None)


def _add_unavailable(sub: Any, name: str, error: ImportError) -> None:
    """`esca NAME` where the native core cannot be loaded: says so when used."""

    def fail(args: argparse.Namespace) -> int:
        print(
            f"{PROG}: {name}: pyesca._core cannot be loaded: {error} (see 'esca doctor')",
            file=sys.stderr,
        )
        return 1

    p = sub.add_parser(
        name, help="(unavailable: see 'esca doctor')", add_help=False, prefix_chars="\0"
    )
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=fail)


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

    for name, add in (("run", _add_run), ("stats", _add_stats), ("bench", _add_bench)):
        try:
            add(sub)
        except ImportError as exc:  # the native core cannot be loaded
            _add_unavailable(sub, name, exc)

    lc = sub.add_parser(
        "loadcheck",
        help="a verifying load client: keep-alive connections, every body's sha256 checked",
        add_help=False,  # --help goes to loadcheck's own parser
        prefix_chars="\0",
    )
    lc.add_argument("args", nargs=argparse.REMAINDER)
    lc.set_defaults(func=_cmd_loadcheck)
    return parser


def _cmd_loadcheck(args: argparse.Namespace) -> int:
    from pyesca import loadcheck

    return loadcheck.main(args.args, prog=f"{PROG} loadcheck")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "bench" and argv is not None:
            args.argv = list(argv)
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
    except ImportError as exc:  # the native core cannot be loaded
        print(f"{PROG}: {exc} (see 'esca doctor')", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
