"""`esca stats`: the counters libesca.so writes, per process and in total.

A program run with `esca run --stats PATH` writes its counters as JSON to
PATH; processes it forks (nginx's workers) write to PATH.<pid>.  `load(PATH)`
reads them all into a :class:`StatsReport`; `format_text()` renders it.
Keys the library does not write (an older or newer version) count as 0.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyesca import _core
from pyesca.run import SYSCALLS

# Why a deferrable call went to the kernel, and what flushed a table: the
# native core's lists (catalog.h ESCA_PASS_REASONS, esca.h ESCA_FLUSH_REASONS).
PASS_REASONS: tuple[str, ...] = tuple(name for name, _help in _core.pass_reasons())
FLUSH_TRIGGERS: tuple[str, ...] = _core.flush_reasons()
# Scalar counters of a stats file, summed over processes.
COUNTERS: tuple[str, ...] = (
    "deferred",
    "kernel_entries",
    "kernel_entries_saved",
    "ops_executed",
    "completed",
    "errors",
    "errors_surfaced",
    "short_completed",
    "resubmitted",
    "fallbacks",
    "bytes_deferred",
    "threads",
    # the levers beyond ESCA (README, "Beyond ESCA")
    "reads_seen",
    "reads_answered",
    "setsockopt_composed",
    "sendfile_direct",
    "flushes_direct",
    "flushes_plain",
    "waits_folded",
    "eagain_parked",
    # closes held for entries that still named the fd, and closes that took
    # their socket out of the program's epoll set first (DESIGN.md,
    # "Contract: fd lifetime")
    "closes_held",
    "closes_out_of_epoll",
    # fd counts given back below zero: a bug of the library's if not 0
    "fd_count_underflows",
    # lever adapt (README, "Beyond ESCA"): windows of event-loop waits measured,
    # those run stepped aside, their thread CPU time (ms), choices changed
    "adapt_windows",
    "adapt_windows_aside",
    "adapt_ms_aside",
    "adapt_switches",
    "adapt_windows_plain",
    # threads stepped aside because their timer's shot, not a trigger of
    # their own, flushed their calls twice in a row (no loop to batch)
    "adapt_loopless",
    # lever prefetch (README, "Beyond ESCA"): peek rounds, sockets peeked,
    # reads answered from a peek, peeks never read, discards that came
    # up short (bytes read twice: must stay 0)
    "prefetch_rounds",
    "prefetch_peeked",
    "prefetch_answered",
    "prefetch_wasted",
    "prefetch_short_discards",
)


class StatsError(Exception):
    """A stats file that cannot be read or is not the library's JSON."""


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError, OverflowError):  # 1e999: inf
        return 0


def _counts(d: Any, names: tuple[str, ...]) -> dict[str, int]:
    """names (in order) first, then any other keys the file has."""
    d = d if isinstance(d, dict) else {}
    out = {n: _int(d.get(n)) for n in names}
    for k, v in d.items():
        if k not in out:
            out[str(k)] = _int(v)
    return out


@dataclass
class SyscallStats:
    seen: int = 0
    deferred: int = 0
    errors_surfaced: int = 0
    passed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PASS_REASONS, 0))

    @property
    def passed_total(self) -> int:
        return sum(self.passed.values())

    @classmethod
    def from_json(cls, d: Any) -> SyscallStats:
        d = d if isinstance(d, dict) else {}
        return cls(
            seen=_int(d.get("seen")),
            deferred=_int(d.get("deferred")),
            errors_surfaced=_int(d.get("errors_surfaced")),
            passed=_counts(d.get("passed"), PASS_REASONS),
        )

    def add(self, o: SyscallStats) -> None:
        self.seen += o.seen
        self.deferred += o.deferred
        self.errors_surfaced += o.errors_surfaced
        for k, v in o.passed.items():
            self.passed[k] = self.passed.get(k, 0) + v


@dataclass
class ProcessStats:
    """One stats file, or the sum of several (pid None)."""

    pid: int | None = None
    path: str = ""
    executor: str = ""
    fallback_reason: str = ""
    syscalls: dict[str, SyscallStats] = field(
        default_factory=lambda: {n: SyscallStats() for n in SYSCALLS}
    )
    flushes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FLUSH_TRIGGERS, 0))
    batch_hist: list[int] = field(default_factory=list)
    deferred: int = 0
    kernel_entries: int = 0
    kernel_entries_saved: int = 0
    ops_executed: int = 0
    completed: int = 0
    errors: int = 0
    errors_surfaced: int = 0
    short_completed: int = 0
    resubmitted: int = 0
    fallbacks: int = 0
    bytes_deferred: int = 0
    threads: int = 0
    reads_seen: int = 0
    reads_answered: int = 0
    setsockopt_composed: int = 0
    sendfile_direct: int = 0
    flushes_direct: int = 0
    flushes_plain: int = 0
    waits_folded: int = 0
    eagain_parked: int = 0
    closes_held: int = 0
    closes_out_of_epoll: int = 0
    fd_count_underflows: int = 0
    adapt_windows: int = 0
    adapt_windows_aside: int = 0
    adapt_ms_aside: int = 0
    adapt_switches: int = 0
    adapt_windows_plain: int = 0
    adapt_loopless: int = 0
    prefetch_rounds: int = 0
    prefetch_peeked: int = 0
    prefetch_answered: int = 0
    prefetch_wasted: int = 0
    prefetch_short_discards: int = 0

    @classmethod
    def from_json(cls, d: dict[str, Any], path: str = "") -> ProcessStats:
        s = cls(
            pid=_int(d["pid"]) if "pid" in d else None,
            path=path,
            executor=str(d.get("executor", "")),
            fallback_reason=str(d.get("fallback_reason", "")),
            flushes=_counts(d.get("flushes"), FLUSH_TRIGGERS),
        )
        sc = d.get("syscalls")
        sc = sc if isinstance(sc, dict) else {}
        s.syscalls = {n: SyscallStats.from_json(sc.get(n)) for n in SYSCALLS}
        for n, v in sc.items():
            if n not in s.syscalls:
                s.syscalls[str(n)] = SyscallStats.from_json(v)
        hist = d.get("batch_hist")
        s.batch_hist = [_int(v) for v in hist] if isinstance(hist, list) else []
        for k in COUNTERS:
            setattr(s, k, _int(d.get(k)))
        if "deferred" not in d:
            s.deferred = sum(c.deferred for c in s.syscalls.values())
        if "errors_surfaced" not in d:
            s.errors_surfaced = sum(c.errors_surfaced for c in s.syscalls.values())
        return s

    def add(self, o: ProcessStats) -> None:
        for n, c in o.syscalls.items():
            self.syscalls.setdefault(n, SyscallStats()).add(c)
        for k, v in o.flushes.items():
            self.flushes[k] = self.flushes.get(k, 0) + v
        if len(o.batch_hist) > len(self.batch_hist):
            self.batch_hist += [0] * (len(o.batch_hist) - len(self.batch_hist))
        for i, v in enumerate(o.batch_hist):
            self.batch_hist[i] += v
        for k in COUNTERS:
            setattr(self, k, getattr(self, k) + getattr(o, k))
        execs = [e for e in self.executor.split(",") if e]
        if o.executor and o.executor not in execs:
            execs.append(o.executor)
        self.executor = ",".join(execs)
        if o.fallback_reason and not self.fallback_reason:
            self.fallback_reason = o.fallback_reason

    @property
    def flushes_total(self) -> int:
        return sum(self.flushes.values())

    @property
    def flushes_with_entries(self) -> int:
        """Flushes that ran at least one entry (the histogram's total)."""
        return sum(self.batch_hist) if self.batch_hist else self.flushes_total

    @property
    def mean_batch_size(self) -> float:
        """Deferred calls per flush that ran any (0.0 when none did)."""
        n = self.flushes_with_entries
        return self.deferred / n if n else 0.0

    @property
    def seen(self) -> int:
        return sum(c.seen for c in self.syscalls.values())

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for n, c in self.syscalls.items():
            d["syscalls"][n]["passed_total"] = c.passed_total
        d["flushes_total"] = self.flushes_total
        d["flushes_with_entries"] = self.flushes_with_entries
        d["mean_batch_size"] = round(self.mean_batch_size, 3)
        d["seen"] = self.seen
        return d


@dataclass
class StatsReport:
    path: str
    processes: list[ProcessStats]

    @property
    def total(self) -> ProcessStats:
        t = ProcessStats()
        for p in self.processes:
            t.add(p)
        return t

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "processes": [p.to_dict() for p in self.processes],
            "total": self.total.to_dict(),
        }


def stats_files(path: str | Path) -> list[Path]:
    """PATH (if it exists) then PATH.<pid> files, by pid."""
    p = Path(path)
    out = [p] if p.is_file() else []
    prefix = p.name + "."
    per_pid: list[tuple[int, Path]] = []
    try:
        entries = list(p.parent.iterdir())
    except OSError:
        entries = []
    for e in entries:
        rest = e.name[len(prefix) :] if e.name.startswith(prefix) else ""
        if rest.isdigit() and e.is_file():
            per_pid.append((int(rest), e))
    return out + [e for _, e in sorted(per_pid)]


def load_file(path: str | Path) -> ProcessStats:
    try:
        text = Path(path).read_text()
    except UnicodeDecodeError as exc:
        raise StatsError(f"{path}: not a stats file: {exc}") from exc
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StatsError(f"{path}: not a stats file: {exc}") from exc
    except RecursionError as exc:  # [[[[... nested past the parser's depth
        raise StatsError(f"{path}: not a stats file: nested too deep") from exc
    if not isinstance(d, dict):
        raise StatsError(f"{path}: not a stats file: not a JSON object")
    return ProcessStats.from_json(d, str(path))


def load(path: str | Path) -> StatsReport:
    """Every stats file of PATH; FileNotFoundError when there is none."""
    if Path(path).is_dir():
        raise StatsError(f"{path}: a directory, not a stats file")
    files = stats_files(path)
    if not files:
        raise FileNotFoundError(2, "No such file or directory", str(path))
    return StatsReport(str(path), [load_file(f) for f in files])


def _passed_text(c: SyscallStats) -> str:
    parts = [f"{k} {v}" for k, v in c.passed.items() if v]
    return ", ".join(parts) if parts else "-"


def format_process(s: ProcessStats, title: str, requests: int = 0) -> str:
    """The table of one process; with `requests` (served while the counters ran,
    e.g. wrk's count) a column of deferred calls per request too."""
    lines = [title]
    per = f"{'per req':>9}" if requests else ""
    head = (
        f"  {'syscall':<11}{'seen':>10}{'deferred':>10}{per}{'passed':>10}{'errors':>8}"
        "  passed by"
    )
    lines.append(head)
    for n, c in s.syscalls.items():
        if not (c.seen or c.deferred or c.passed_total or c.errors_surfaced):
            continue
        col = f"{c.deferred / requests:>9.2f}" if requests else ""
        lines.append(
            f"  {n:<11}{c.seen:>10}{c.deferred:>10}{col}{c.passed_total:>10}"
            f"{c.errors_surfaced:>8}  {_passed_text(c)}"
        )
    if len(lines) == 2:
        lines.append("  (no interposed call seen)")
    fl = ", ".join(f"{k} {v}" for k, v in s.flushes.items() if v) or "none"
    lines.append(
        f"  flushes          {s.flushes_total} ({fl}); {s.flushes_with_entries} with entries"
    )
    lines.append(f"  mean batch size  {s.mean_batch_size:.2f}")
    if requests:
        lines.append(
            f"  per request      {s.deferred / requests:.2f} calls deferred,"
            f" {s.kernel_entries / requests:.2f} kernel entries by the executor"
        )
    lines.append(
        f"  kernel entries   {s.kernel_entries} made, {s.kernel_entries_saved} saved"
        f" ({s.deferred} calls deferred, {s.bytes_deferred} bytes)"
    )
    lines.append(
        f"  completed        {s.completed} of {s.ops_executed} ops executed;"
        f" short writes completed {s.short_completed}, resubmitted {s.resubmitted}"
    )
    lines.append(f"  errors           {s.errors} ({s.errors_surfaced} surfaced to the program)")
    lines.append(
        f"  levers           {s.reads_answered} reads answered without the kernel"
        f" (of {s.reads_seen} looked at), {s.setsockopt_composed} setsockopt composed"
        f" into MSG_MORE, {s.sendfile_direct} sendfile run as themselves,"
        f" {s.waits_folded} epoll waits folded into a flush,"
        f" {s.flushes_direct} one-call flushes run as the plain syscall,"
        f" {s.flushes_plain} flushes run as plain syscalls (adapt's plain mode),"
        f" {s.eagain_parked} sends EAGAIN behind parked bytes"
    )
    lines.append(
        f"  stepped aside    {s.adapt_windows_aside} of {s.adapt_windows} windows"
        f" of event-loop waits ({s.adapt_ms_aside} ms of thread CPU), choice changed"
        f" {s.adapt_switches} times (lever adapt); {s.adapt_windows_plain} windows"
        f" deferring with plain flushes (lever plain); {s.adapt_loopless} times a"
        f" thread without a loop (its calls flushed by the timer) stepped aside"
    )
    if s.closes_held or s.closes_out_of_epoll:
        lines.append(
            f"  closes           {s.closes_held} held for entries still naming the fd,"
            f" {s.closes_out_of_epoll} took their socket out of an epoll set first"
        )
    if s.prefetch_rounds or s.prefetch_short_discards:
        lines.append(
            f"  prefetch         {s.prefetch_rounds} peek rounds, {s.prefetch_peeked}"
            f" sockets peeked, {s.prefetch_answered} reads answered from a peek,"
            f" {s.prefetch_wasted} peeks never read,"
            f" {s.prefetch_short_discards} short discards (lever prefetch)"
        )
    fb = f"  fallbacks        {s.fallbacks}"
    if s.fallback_reason:
        fb += f" ({s.fallback_reason})"
    lines.append(fb)
    return "\n".join(lines)


def format_text(r: StatsReport, requests: int = 0) -> str:
    blocks = []
    for p in r.processes:
        who = f"pid {p.pid}" if p.pid is not None else p.path
        blocks.append(
            format_process(
                p, f"process {who} (executor {p.executor or '?'}, {p.path})", requests
            )
        )
    if len(r.processes) > 1:
        t = r.total
        blocks.append(
            format_process(
                t,
                f"total of {len(r.processes)} processes (executor {t.executor or '?'})",
                requests,
            )
        )
    return "\n\n".join(blocks)
