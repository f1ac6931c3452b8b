"""What `esca bench` reports: a terminal table, JSON, a markdown table, a PNG.

Per mode and case: the median and min-max of requests/s and transfer/s over
the rounds, wrk's latency line of the median round, socket errors and
non-2xx responses (a mode with any is flagged, and its ratio marked, not
silently ranked), the ratio to the baseline (the median of per-round ratios:
the rounds are interleaved, so a pair ran close together), kernel entries per
request (perf) and the interposer's own counters.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyesca.bench.runner import MODES, BenchResult, RunRecord
from pyesca.bench.servers import file_name
from pyesca.bench.wrk import Latency

SCHEMA = 2
FLAG = "!"
# CPUs other processes may use during a measured run before the report warns.
OTHER_CPU_WARN = 0.10
# A run is quiet when other load and steal each stayed at or under this.
QUIET_CPU = 0.10


@dataclass
class Spread:
    median: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread | None:
        if not values:
            return None
        return cls(statistics.median(values), min(values), max(values))

    def to_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.min, "max": self.max}


@dataclass
class ModeSummary:
    mode: str
    about: str
    rounds: int
    requests_per_sec: Spread | None
    transfer_per_sec: Spread | None
    latency: Latency | None
    socket_errors: int
    non_2xx: int
    ratio: float | None
    ratio_rounds: list[float]
    kernel_entries_per_request: Spread | None
    kernel_entries_reason: str
    deferred_per_request: Spread | None
    mean_batch_size: Spread | None
    executor: str
    flags: list[str] = field(default_factory=list)
    server_user_us: Spread | None = None  # CPU microseconds per request
    server_sys_us: Spread | None = None
    wrk_us: Spread | None = None
    notes: list[str] = field(default_factory=list)
    records: list[RunRecord] = field(default_factory=list)
    # Against the baseline's server CPU per request (usr+sys medians): what
    # this mode's kernel entries cost (entries/req x the measured entry cost),
    # what the entries it removed would save at that cost, and what it saved.
    entries_cpu_share: float | None = None
    entries_saved_share: float | None = None
    cpu_saved: float | None = None
    # Per round against the baseline's run of the same round: server CPU per
    # request; and both ratios over the quiet rounds only (neither run had
    # other load or steal over QUIET_CPU): on a VM whose host steals its
    # vCPUs, CPU per request rises with the steal, and a median
    # over disturbed rounds can hide or invent a few percent.
    cpu_ratio_rounds: list[float] = field(default_factory=list)
    quiet_rounds: int = 0
    ratio_quiet: float | None = None
    cpu_ratio_quiet: float | None = None

    @property
    def server_cpu_us(self) -> float | None:
        u, s = self.server_user_us, self.server_sys_us
        return None if u is None or s is None else u.median + s.median

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    def to_dict(self) -> dict[str, Any]:
        def sp(s: Spread | None) -> dict[str, float] | None:
            return s.to_dict() if s else None

        epr: Any = sp(self.kernel_entries_per_request)
        if epr is None:
            epr = "n/a"
        return {
            "mode": self.mode,
            "about": self.about,
            "rounds": self.rounds,
            "requests_per_sec": sp(self.requests_per_sec),
            "transfer_per_sec": sp(self.transfer_per_sec),
            "latency": None if self.latency is None else vars(self.latency),
            "socket_errors": self.socket_errors,
            "non_2xx": self.non_2xx,
            "errors": self.errors,
            "ratio": self.ratio,
            "ratio_rounds": self.ratio_rounds,
            "cpu_ratio_rounds": self.cpu_ratio_rounds,
            "quiet_rounds": self.quiet_rounds,
            "ratio_quiet": self.ratio_quiet,
            "cpu_ratio_quiet": self.cpu_ratio_quiet,
            "kernel_entries_per_request": epr,
            "kernel_entries_reason": self.kernel_entries_reason,
            "deferred_per_request": sp(self.deferred_per_request),
            "mean_batch_size": sp(self.mean_batch_size),
            "server_user_us_per_request": sp(self.server_user_us),
            "server_sys_us_per_request": sp(self.server_sys_us),
            "wrk_us_per_request": sp(self.wrk_us),
            "server_cpu_us_per_request": self.server_cpu_us,
            "entries_cpu_share_of_baseline": self.entries_cpu_share,
            "entries_saved_share_of_baseline": self.entries_saved_share,
            "cpu_saved_vs_baseline": self.cpu_saved,
            "executor": self.executor,
            "flagged": self.flagged,
            "flags": self.flags,
            "notes": self.notes,
            "runs": [r.to_dict() for r in self.records],
        }


@dataclass
class CaseSummary:
    connections: int
    size: int
    baseline: str
    modes: list[ModeSummary]
    page: str = ""  # a config's own index page, requested as GET /

    @property
    def file(self) -> str:
        return self.page or file_name(self.size)

    @property
    def url_path(self) -> str:
        return "/" if self.page else f"/{self.file}"


def _median_record(recs: Sequence[RunRecord]) -> RunRecord | None:
    ok = sorted((r for r in recs if r.measured is not None), key=lambda r: r.requests_per_sec)
    return ok[(len(ok) - 1) // 2] if ok else None


def _quiet(r: RunRecord) -> bool:
    """Nothing but the server and wrk used the CPUs in r's measured run."""
    return (r.other_cpu or 0.0) <= QUIET_CPU and (r.steal_cpu or 0.0) <= QUIET_CPU


def _server_cpu(r: RunRecord) -> float | None:
    u, s = r.server_user_us, r.server_sys_us
    return None if u is None or s is None else u + s


def summarise_mode(
    mode: str, recs: list[RunRecord], base: dict[int, RunRecord] | None
) -> ModeSummary:
    measured = [r for r in recs if r.measured is not None]
    rps = [r.requests_per_sec for r in measured]
    tps = [r.measured.transfer_per_sec for r in measured if r.measured is not None]
    med = _median_record(recs)
    socket_errors = non_2xx = 0
    for r in recs:
        for w in (r.warmup, r.measured, r.count_run):
            if w is not None:
                socket_errors += w.socket_error_total
                non_2xx += w.non_2xx
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    quiet: list[float] = []
    cpu_quiet: list[float] = []
    if base is not None:
        for r in measured:
            b = base.get(r.round)
            if b is None or b.requests_per_sec <= 0:
                continue
            q = _quiet(r) and _quiet(b)
            ratios.append(r.requests_per_sec / b.requests_per_sec)
            if q:
                quiet.append(ratios[-1])
            rc, bc = _server_cpu(r), _server_cpu(b)
            if rc is not None and bc:
                cpu_ratios.append(rc / bc)
                if q:
                    cpu_quiet.append(cpu_ratios[-1])
    eprs = [e for r in recs if (e := r.entries_per_request) is not None]
    reasons = sorted({r.kernel_entries_reason for r in recs if r.kernel_entries_reason})
    dprs = [d for r in recs if (d := r.deferred_per_request) is not None]
    batches = [float(r.stats["mean_batch_size"]) for r in recs if r.stats]
    execs = sorted({str(r.stats.get("executor") or "?") for r in recs if r.stats})
    flags: list[str] = []
    errs = []
    for r in recs:
        parts = []
        for label, w in (("warm-up", r.warmup), ("measured", r.measured), ("count", r.count_run)):
            if w is None or not w.errors:
                continue
            e = ", ".join(f"{k} {v}" for k, v in w.socket_errors.items() if v)
            if w.non_2xx:
                e = f"{e}, non-2xx {w.non_2xx}" if e else f"non-2xx {w.non_2xx}"
            parts.append(f"{label} run: {e}")
        if parts:
            errs.append(f"round {r.round}: " + "; ".join(parts))
        for p in r.problems:
            flags.append(f"round {r.round}: {p}")
        if r.stats and (r.stats.get("fallbacks") or r.stats.get("fallback_reason")):
            flags.append(
                f"round {r.round}: executor fell back to sequential:"
                f" {r.stats.get('fallback_reason') or 'see esca doctor'}"
            )
    flags = errs + flags
    if len(measured) < len(recs):
        flags.append(f"{len(recs) - len(measured)} of {len(recs)} rounds not measured")
    return ModeSummary(
        mode=mode,
        about=MODES[mode].about if mode in MODES else "",
        rounds=len(recs),
        requests_per_sec=Spread.of(rps),
        transfer_per_sec=Spread.of(tps),
        latency=med.measured.latency if med and med.measured else None,
        socket_errors=socket_errors,
        non_2xx=non_2xx,
        ratio=statistics.median(ratios) if ratios else None,
        ratio_rounds=ratios,
        cpu_ratio_rounds=cpu_ratios,
        quiet_rounds=len(quiet),
        ratio_quiet=statistics.median(quiet) if quiet else None,
        cpu_ratio_quiet=statistics.median(cpu_quiet) if cpu_quiet else None,
        kernel_entries_per_request=Spread.of(eprs),
        kernel_entries_reason="; ".join(reasons),
        deferred_per_request=Spread.of(dprs),
        mean_batch_size=Spread.of(batches),
        server_user_us=Spread.of([v for r in measured if (v := r.server_user_us) is not None]),
        server_sys_us=Spread.of([v for r in measured if (v := r.server_sys_us) is not None]),
        wrk_us=Spread.of([v for r in measured if (v := r.wrk_us) is not None]),
        executor=",".join(execs) if execs else "-",
        flags=flags,
        notes=[f"round {r.round}: {n}" for r in recs for n in r.notes],
        records=recs,
    )


def entry_ns(result: BenchResult) -> float | None:
    e = result.info.get("kernel_entry")
    return float(e["ns"]) if isinstance(e, dict) and e.get("ns") else None


def add_entry_shares(case: CaseSummary, ns: float | None) -> None:
    """Each mode's entries x entry cost, and its saving, as shares of the
    baseline's server CPU per request."""
    base = next((m for m in case.modes if m.mode == case.baseline), None)
    if base is None or not base.server_cpu_us:
        return
    base_cpu_ns = base.server_cpu_us * 1000.0
    base_epr = base.kernel_entries_per_request
    for m in case.modes:
        cpu = m.server_cpu_us
        if cpu is not None:
            m.cpu_saved = 1.0 - cpu * 1000.0 / base_cpu_ns
        epr = m.kernel_entries_per_request
        if ns is None or epr is None:
            continue
        m.entries_cpu_share = epr.median * ns / base_cpu_ns
        if base_epr is not None:
            m.entries_saved_share = (base_epr.median - epr.median) * ns / base_cpu_ns


def summarise(result: BenchResult) -> list[CaseSummary]:
    cfg = result.config
    baseline = "vanilla" if "vanilla" in cfg.modes else cfg.modes[0]
    page = cfg.server_config.index_page
    ns = entry_ns(result)
    out = []
    for conns, size in cfg.cases:
        recs = [r for r in result.records if (r.connections, r.size) == (conns, size)]
        if not recs:
            continue
        base = {r.round: r for r in recs if r.mode == baseline}
        modes = [
            summarise_mode(m, [r for r in recs if r.mode == m], base)
            for m in cfg.modes
            if any(r.mode == m for r in recs)
        ]
        case = CaseSummary(conns, size, baseline, modes, page[0] if page else "")
        add_entry_shares(case, ns)
        out.append(case)
    return out


# ---------------------------------------------------------------- formatting


def fmt_bytes(n: float) -> str:
    """wrk's style: binary units, two decimals (1.80GB)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.2f}{unit}" if unit != "B" else f"{n:.0f}B"
        n /= 1024
    return f"{n:.2f}TB"


def fmt_time(us: float) -> str:
    """wrk's style: 519.95us, 5.00ms, 1.20s."""
    if us < 1000:
        return f"{us:.2f}us"
    if us < 1e6:
        return f"{us / 1e3:.2f}ms"
    return f"{us / 1e6:.2f}s"


def _cpus(cpus: Sequence[int]) -> str:
    return ",".join(map(str, cpus))


def _ratio(m: ModeSummary, baseline: str) -> str:
    if m.ratio is None:
        return "-"
    text = f"{m.ratio:.2f}"
    return f"{text}{FLAG}" if m.flagged else text


def _opt(s: Spread | None, spec: str) -> str:
    return format(s.median, spec) if s is not None else "-"


def disturbed(case: CaseSummary, steal: bool = False) -> list[str]:
    """Runs during which other processes used (or, with steal, the
    hypervisor withheld: steal time) more than OTHER_CPU_WARN CPUs."""
    out = []
    for m in case.modes:
        for r in m.records:
            v = r.steal_cpu if steal else r.other_cpu
            if v is not None and v > OTHER_CPU_WARN:
                out.append(f"{m.mode} round {r.round}: {v:.2f}")
    return out


def disturbed_line(case: CaseSummary) -> str:
    lines = []
    d = disturbed(case)
    if d:
        lines.append(
            "warning: other processes used CPU during measured runs (CPUs: "
            + ", ".join(d)
            + "): those numbers are disturbed"
        )
    d = disturbed(case, steal=True)
    if d:
        lines.append(
            "warning: the hypervisor withheld CPU (steal time) during measured runs (CPUs: "
            + ", ".join(d)
            + "): the server and wrk waited for the host, those numbers are disturbed"
            " (CPU per request too); see the quiet rounds, or run again when the host is quiet"
        )
    return "\n".join(lines)


def _epr(m: ModeSummary) -> str:
    return _opt(m.kernel_entries_per_request, ".2f") if m.kernel_entries_per_request else "n/a"


def case_title(result: BenchResult, case: CaseSummary) -> str:
    cfg = result.config
    threads = max(1, min(cfg.threads, case.connections))
    page = f" ({case.file})" if case.page else ""
    return (
        f"{cfg.config}: {result.info.get('server_version', cfg.server)}, GET {case.url_path}{page}"
        f" ({case.size:,} B), wrk -t{threads} -c{case.connections} -d{cfg.duration}s,"
        f" {cfg.rounds} round{'s' if cfg.rounds > 1 else ''} interleaved"
    )


def command_line(result: BenchResult) -> str:
    return result.command or "esca bench"


def setup_lines(result: BenchResult) -> list[str]:
    cfg, info = result.config, result.info
    sc = cfg.server_config
    lines = [f"config {sc.name}: {sc.about}", f"pinning: {result.pinning.note}"]
    if sc.kind == "nginx":
        procs = sorted({r.server_processes for r in result.records if r.server_processes})
        seen = f", {'/'.join(str(p - 1) for p in procs)} seen" if procs else ""
        lines.append(f"nginx: master + workers (worker_processes {sc.workers}{seen})")
    busy = info.get("busy_before_start_pct")
    if busy is not None and busy > 10:
        lines.append(f"warning: the CPUs were {busy:.0f}% busy before the start (other load)")
    lines.append(machine_line(info))
    return lines


def machine_line(info: dict[str, Any]) -> str:
    entry = info.get("kernel_entry") or {}
    cost = f", a kernel entry {entry['ns']:.0f} ns (getppid)" if entry.get("ns") else ""
    load = info.get("loadavg_start")
    end = info.get("loadavg_end")
    loads = f", load average {load}" + (f" -> {end}" if end else "") if load else ""
    return (
        f"machine: Linux {info.get('kernel')}, {info.get('cpus')} CPUs"
        f" ({info.get('cpu_model') or '?'}){cost}{loads}; {info.get('wrk_version')};"
        f" pyesca {info.get('commit') or info.get('pyesca')}"
    )


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:+.0f}%" if v < 0 else f"{100 * v:.0f}%"


def ceiling_lines(case: CaseSummary, ns: float | None) -> list[str]:
    """What kernel entries account for in the baseline's CPU per request,
    and how much of it each mode removed and saved."""
    base = next((m for m in case.modes if m.mode == case.baseline), None)
    if base is None or ns is None:
        return []
    epr, cpu = base.kernel_entries_per_request, base.server_cpu_us
    if epr is None or not cpu:
        return ["ceiling: n/a (no kernel entry count or no CPU time for " + case.baseline + ")"]
    out = [
        f"ceiling: {case.baseline} makes {epr.median:.2f} kernel entries a request x {ns:.0f} ns"
        f" = {epr.median * ns / 1000:.2f} us of its {cpu:.2f} us server CPU a request"
        f" ({_pct(base.entries_cpu_share)}): removing every entry would save at most that"
    ]
    for m in case.modes:
        if m.mode == case.baseline or m.entries_saved_share is None:
            continue
        out.append(
            f"  {m.mode}: {_epr(m)} entries/req, their cost saved {_pct(m.entries_saved_share)}"
            f" of {case.baseline}'s CPU/req; CPU/req measured saved {_pct(m.cpu_saved)}"
        )
    return out


def quiet_lines(case: CaseSummary) -> list[str]:
    """The ratios over the quiet rounds (when some rounds were not)."""
    noisy = any(not _quiet(r) for m in case.modes for r in m.records)
    if not noisy:
        return []
    out = [
        f"quiet rounds (its run and {case.baseline}'s had other load and steal of at most"
        f" {QUIET_CPU:.2f} CPU), medians of per-round ratios to {case.baseline}:"
    ]
    for m in case.modes:
        if m.mode == case.baseline:
            continue
        if not m.quiet_rounds:
            out.append(f"  {m.mode}: no quiet round of {len(m.ratio_rounds)}")
            continue
        cpu = f"{m.cpu_ratio_quiet:.2f}" if m.cpu_ratio_quiet is not None else "-"
        out.append(
            f"  {m.mode}: {m.quiet_rounds} of {len(m.ratio_rounds)} rounds:"
            f" requests/s {m.ratio_quiet:.2f}x, server CPU/req {cpu}x"
        )
    return out


def _cpu(m: ModeSummary) -> str:
    u, s = m.server_user_us, m.server_sys_us
    if u is None or s is None:
        return "-"
    return f"{u.median + s.median:.2f} ({u.median:.2f}+{s.median:.2f})"


def format_text(result: BenchResult) -> str:
    cfg = result.config
    out: list[str] = []
    for case in summarise(result):
        out.append(f"esca bench: {case_title(result, case)}")
        out += [f"  {line}" for line in setup_lines(result)]
        out.append("")
        w = max(9, *(len(m.mode) + 1 for m in case.modes))
        head = (
            f"  {'mode':<{w}}{'requests/s':>11} {'(min - max)':<19}{'transfer/s':>10}"
            f"{'ratio':>7}{'entries/req':>12}{'deferred/req':>13}{'batch':>7}"
            f"{'cpu us/req: server usr+sys':>28}{'wrk':>6}{'entries':>9}{'saved':>7}"
            f"{'errors':>8}"
        )
        out.append(head)
        for m in case.modes:
            rps, tps = m.requests_per_sec, m.transfer_per_sec
            rng = f"({rps.min:,.0f} - {rps.max:,.0f})" if rps else ""
            out.append(
                f"  {m.mode:<{w}}{_opt(rps, ',.0f'):>11} {rng:<19}"
                f"{fmt_bytes(tps.median) if tps else '-':>10}"
                f"{_ratio(m, case.baseline):>7}{_epr(m):>12}"
                f"{_opt(m.deferred_per_request, '.2f'):>13}{_opt(m.mean_batch_size, '.2f'):>7}"
                f"{_cpu(m):>28}{_opt(m.wrk_us, '.1f'):>6}"
                f"{_pct(m.entries_cpu_share):>9}{_pct(m.cpu_saved):>7}"
                f"{m.errors:>8}"
            )
        out.append("")
        out += [f"  {line}" for line in ceiling_lines(case, entry_ns(result))]
        if q := quiet_lines(case):
            out.append("")
            out += [f"  {line}" for line in q]
        out.append("")
        out.append(
            f"  {'wrk latency (median round)':<28}{'Avg':>9}{'Stdev':>10}{'Max':>10}"
            f"{'+/- Stdev':>11}"
        )
        for m in case.modes:
            lat = m.latency
            if lat is None:
                out.append(f"    {m.mode:<26}{'-':>9}")
                continue
            out.append(
                f"    {m.mode:<26}{fmt_time(lat.avg_us):>9}{fmt_time(lat.stdev_us):>10}"
                f"{fmt_time(lat.max_us):>10}{lat.within_stdev_pct:>10.2f}%"
            )
        flagged = [m for m in case.modes if m.flags or m.notes]
        warn = disturbed_line(case)
        if flagged or warn:
            out.append("")
            out += [f"  {w}" for w in warn.splitlines()]
            for m in flagged:
                for f in m.flags:
                    out.append(f"  {FLAG} {m.mode}: {f}")
                for n in m.notes:
                    out.append(f"  note: {m.mode}: {n}")
        out.append("")
    out += notes(result)
    if result.interrupted:
        out.append(f"interrupted after {len(result.records)} of {cfg.runs} runs")
    return "\n".join(out)


def notes(result: BenchResult) -> list[str]:
    cfg = result.config
    baseline = "vanilla" if "vanilla" in cfg.modes else cfg.modes[0]
    perf_note = result.info.get("perf", "")
    if cfg.perf_seconds and not perf_note.startswith("perf stat"):
        kern = f"entries/req: n/a ({perf_note})"
    elif cfg.perf_seconds:
        kern = (
            "entries/req: system calls the server made per request, perf stat -e"
            f" raw_syscalls:sys_enter -p <server pids>, in a separate {cfg.perf_seconds} s wrk"
            " run (perf's own cost is kept out of requests/s)"
        )
    else:
        kern = "entries/req: not counted (--perf-seconds 0)"
    return [
        f"ratio: median over rounds of requests/s over {baseline}'s in the same round;"
        f" {FLAG} = the mode had errors or problems (listed above): do not rank it",
        kern,
        "deferred/req, batch: the interposer's counters (esca stats): calls deferred per"
        " request, calls per flush that ran any",
        "cpu us/req: CPU time per request in the measured run (medians over rounds): the"
        " server's processes, user + system (from /proc/PID/stat), and wrk's",
        "entries: entries/req x the kernel entry cost (a bare getppid, measured at the start"
        f" and end; the lower kept), as a share of {baseline}'s server CPU per request"
        f" (for {baseline}: the ceiling of what removing entries can save; a real call costs"
        " more than getppid inside the kernel, but that work stays when calls are batched);"
        f" saved: 1 - server CPU/req over {baseline}'s",
        "errors: wrk's socket errors + non-2xx responses, over all wrk runs of the mode",
        "These are ratios on one machine, server and wrk sharing its cores over loopback;"
        " absolute requests/s are not comparable across machines.",
    ]


def format_markdown(result: BenchResult, source: str = "") -> str:
    """The markdown table(s) of a run: those of its JSON (format_markdown_json)."""
    return format_markdown_json(to_json(result), source)


def _md_spread(d: dict[str, float] | None, spec: str) -> str:
    return "-" if not d else format(d["median"], spec)


def _md_pct(v: float | None) -> str:
    return _pct(v)


def format_markdown_json(data: dict[str, Any], source: str = "") -> str:
    """Markdown tables from `esca bench --json` output: a paragraph saying what
    produced them (command, commit, machine, entry cost, load, and `source`,
    the JSON file when rendered by `esca bench --from`), then one table per case."""
    info = data.get("machine", {})
    entry = info.get("kernel_entry") or {}
    cost = f"{entry['ns']:.0f} ns" if entry.get("ns") else "n/a"
    by = f"`esca bench --from {source}`, from " if source else ""
    out = [
        f"{by}`{data.get('command', 'esca bench')}` at pyesca {info.get('commit', '?')}:"
        f" {info.get('cpu_model') or '?'}, {info.get('cpus')} vCPUs, Linux {info.get('kernel')},"
        f" a kernel entry (getppid) {cost}, load average {info.get('loadavg_start', '?')}"
        f" at the start, {info.get('loadavg_end', '?')} at the end;"
        f" {data.get('pinning', {}).get('note', '')}.",
        "",
    ]
    for case in data.get("cases", []):
        out.append(f"{case.get('title', '')}.")
        out.append("")
        out.append(
            "| mode | requests/s (min–max) | transfer/s | ratio | kernel entries/req"
            " | entries x cost / base CPU | CPU/req saved"
            " | deferred/req | mean batch | server CPU µs/req (usr+sys) | wrk CPU µs/req"
            " | latency avg | errors |"
        )
        out.append("| --- |" + " ---: |" * 12)
        for name, m in case["modes"].items():
            rps, tps = m.get("requests_per_sec"), m.get("transfer_per_sec")
            rng = f"{rps['median']:,.0f} ({rps['min']:,.0f}–{rps['max']:,.0f})" if rps else "-"
            ratio = "-" if m.get("ratio") is None else f"{m['ratio']:.2f}"
            if m.get("flagged") and m.get("ratio") is not None:
                ratio += FLAG
            epr = m.get("kernel_entries_per_request")
            epr_s = "n/a" if not isinstance(epr, dict) else f"{epr['median']:.2f}"
            u, sy = m.get("server_user_us_per_request"), m.get("server_sys_us_per_request")
            cpu = (
                f"{u['median'] + sy['median']:.2f} ({u['median']:.2f}+{sy['median']:.2f})"
                if u and sy
                else "-"
            )
            lat = m.get("latency")
            out.append(
                f"| {name} | {rng} | {fmt_bytes(tps['median']) if tps else '-'} | {ratio}"
                f" | {epr_s} | {_md_pct(m.get('entries_cpu_share_of_baseline'))}"
                f" | {_md_pct(m.get('cpu_saved_vs_baseline'))}"
                f" | {_md_spread(m.get('deferred_per_request'), '.2f')}"
                f" | {_md_spread(m.get('mean_batch_size'), '.2f')}"
                f" | {cpu} | {_md_spread(m.get('wrk_us_per_request'), '.1f')}"
                f" | {fmt_time(lat['avg_us']) if lat else '-'} | {m.get('errors', 0)} |"
            )
        quiet = [
            f"{name} {m['quiet_rounds']} of {len(m.get('ratio_rounds') or [])}:"
            f" requests/s {m['ratio_quiet']:.2f}x"
            + (f", server CPU/req {m['cpu_ratio_quiet']:.2f}x" if m.get("cpu_ratio_quiet") else "")
            for name, m in case["modes"].items()
            if m.get("ratio_quiet") is not None and name != case.get("baseline")
            and m.get("quiet_rounds", 0) < len(m.get("ratio_rounds") or [])
        ]
        if quiet:
            head = "Over the quiet rounds only (no other load or steal): "
            out += ["", head + "; ".join(quiet) + "."]
        if warn := case.get("warning"):
            for w in warn.splitlines():
                out += ["", w[0].upper() + w[1:] + "."]
        out.append("")
    return "\n".join(out)


def to_json(result: BenchResult) -> dict[str, Any]:
    cfg = result.config
    sc = cfg.server_config
    ns = entry_ns(result)
    return {
        "schema": SCHEMA,
        "command": command_line(result),
        "interrupted": result.interrupted,
        "config": {
            "config": sc.name,
            "about": sc.about,
            "server": sc.kind,
            "modes": list(cfg.modes),
            "rounds": cfg.rounds,
            "duration": cfg.duration,
            "warmup": cfg.warmup,
            "perf_seconds": cfg.perf_seconds,
            "threads": cfg.threads,
            "connections": list(cfg.connections),
            "sizes": sorted({s for _, s in cfg.cases}),
            "nginx_workers": sc.workers or None,
            "access_log": sc.access_log,
        },
        "pinning": {
            "server_cpus": list(result.pinning.server_cpus),
            "client_cpus": list(result.pinning.client_cpus),
            "note": result.pinning.note,
        },
        "machine": result.info,
        "cases": [
            {
                "connections": c.connections,
                "size": c.size,
                "file": c.file,
                "url_path": c.url_path,
                "title": case_title(result, c),
                "baseline": c.baseline,
                "ceiling": ceiling_lines(c, ns),
                "warning": disturbed_line(c),
                "modes": {m.mode: m.to_dict() for m in c.modes},
            }
            for c in summarise(result)
        ],
    }


# ---------------------------------------------------------------- plot


def plot_available() -> str:
    """'' when matplotlib can be imported, else why not."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        return f"--plot needs matplotlib (pip install 'pyesca[bench]'): {exc}"
    return ""


def plot(result: BenchResult, path: str | Path) -> None:
    """A PNG: requests/s per mode (median bars, min-max whiskers, ratio on top)
    per case, and kernel entries per request beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    cases = summarise(result)
    modes = list(result.config.modes)
    colors = {
        "vanilla": "#8c8c8c",
        "seed": "#f0a030",
        "esca": "#2a7ab0",
        "esca-base": "#5aa05a",
        "esca-seq": "#7fb8d8",
    }
    fig, (ax, ax2) = plt.subplots(
        1,
        2,
        figsize=(max(8.0, 3.0 + 2.2 * len(cases) * len(modes) / 2), 4.8),
        gridspec_kw={"width_ratios": [2, 1]},
    )
    width = 0.8 / max(1, len(modes))
    labels = [f"c{c.connections} {c.file}" for c in cases]
    for i, mode in enumerate(modes):
        xs, med, lo, hi, epr, ratios, flagged = [], [], [], [], [], [], []
        for ci, c in enumerate(cases):
            m = next((s for s in c.modes if s.mode == mode), None)
            if m is None or m.requests_per_sec is None:
                continue
            x = ci + (i - (len(modes) - 1) / 2) * width
            xs.append(x)
            med.append(m.requests_per_sec.median)
            lo.append(m.requests_per_sec.median - m.requests_per_sec.min)
            hi.append(m.requests_per_sec.max - m.requests_per_sec.median)
            e = m.kernel_entries_per_request
            epr.append(e.median if e else 0.0)
            ratios.append(m.ratio)
            flagged.append(m.flagged)
        color = colors.get(mode, f"C{i}")
        ax.bar(
            xs,
            med,
            width,
            yerr=[lo, hi],
            capsize=4,
            color=color,
            label=mode,
            hatch=None,
            edgecolor="black",
            linewidth=0.5,
        )
        for x, y, h, r, f in zip(xs, med, hi, ratios, flagged, strict=True):
            text = "" if r is None else f"x{r:.2f}"
            if f:
                text += f" {FLAG}errors"
            if text:
                ax.annotate(
                    text,
                    (x, y + h),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    xytext=(0, 2),
                    textcoords="offset points",
                    color="red" if f else "black",
                )
        ax2.bar(xs, epr, width, color=color, edgecolor="black", linewidth=0.5)
        for x, y in zip(xs, epr, strict=True):
            ax2.annotate(
                f"{y:.2f}" if y else "n/a",
                (x, y),
                ha="center",
                va="bottom",
                fontsize=8,
                xytext=(0, 2),
                textcoords="offset points",
            )
    for a in (ax, ax2):
        a.set_xticks(range(len(cases)))
        a.set_xticklabels(labels)
    ax.set_ylabel("requests/s (median, min-max whiskers)")
    ax.legend(loc="lower right", fontsize=8)
    ax2.set_ylabel("kernel entries per request (perf)")
    cfg = result.config
    server = result.info.get("server_version", cfg.server)
    pin = result.pinning
    where = (
        f"server on CPU {_cpus(pin.server_cpus)}, wrk on CPU {_cpus(pin.client_cpus)}"
        if pin.server_cpus
        else "not pinned"
    )
    rounds = f"{cfg.rounds} round{'s' if cfg.rounds > 1 else ''}"
    fig.suptitle(
        f"esca bench: {server}, wrk -t{cfg.threads} -d{cfg.duration}s, {rounds} interleaved"
        f" ({where})",
        fontsize=10,
    )
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    fig.text(
        0.01,
        0.01,
        "ratios to vanilla in the same round; one machine, server and client share its"
        " cores over loopback",
        fontsize=7,
        color="#555555",
    )
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
