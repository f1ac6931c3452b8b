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

SCHEMA = 1
FLAG = "!"
# CPUs other processes may use during a measured run before the report warns.
OTHER_CPU_WARN = 0.10


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
            "kernel_entries_per_request": epr,
            "kernel_entries_reason": self.kernel_entries_reason,
            "deferred_per_request": sp(self.deferred_per_request),
            "mean_batch_size": sp(self.mean_batch_size),
            "server_user_us_per_request": sp(self.server_user_us),
            "server_sys_us_per_request": sp(self.server_sys_us),
            "wrk_us_per_request": sp(self.wrk_us),
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

    @property
    def file(self) -> str:
        return file_name(self.size)


def _median_record(recs: Sequence[RunRecord]) -> RunRecord | None:
    ok = sorted((r for r in recs if r.measured is not None), key=lambda r: r.requests_per_sec)
    return ok[(len(ok) - 1) // 2] if ok else None


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
    if base is not None:
        for r in measured:
            b = base.get(r.round)
            if b is not None and b.requests_per_sec > 0:
                ratios.append(r.requests_per_sec / b.requests_per_sec)
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


def summarise(result: BenchResult) -> list[CaseSummary]:
    cfg = result.config
    baseline = "vanilla" if "vanilla" in cfg.modes else cfg.modes[0]
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
        out.append(CaseSummary(conns, size, baseline, modes))
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


def disturbed(case: CaseSummary) -> list[str]:
    """Runs during which other processes used more than OTHER_CPU_WARN CPUs."""
    out = []
    for m in case.modes:
        for r in m.records:
            if r.other_cpu is not None and r.other_cpu > OTHER_CPU_WARN:
                out.append(f"{m.mode} round {r.round}: {r.other_cpu:.2f}")
    return out


def disturbed_line(case: CaseSummary) -> str:
    d = disturbed(case)
    if not d:
        return ""
    return (
        "warning: other processes used CPU during measured runs (CPUs: "
        + ", ".join(d)
        + "): those numbers are disturbed"
    )


def _epr(m: ModeSummary) -> str:
    return _opt(m.kernel_entries_per_request, ".2f") if m.kernel_entries_per_request else "n/a"


def case_title(result: BenchResult, case: CaseSummary) -> str:
    cfg = result.config
    threads = max(1, min(cfg.threads, case.connections))
    return (
        f"{result.info.get('server_version', cfg.server)}, GET /{case.file}"
        f" ({case.size:,} B), wrk -t{threads} -c{case.connections} -d{cfg.duration}s,"
        f" {cfg.rounds} round{'s' if cfg.rounds > 1 else ''} interleaved"
    )


def command_line(result: BenchResult) -> str:
    return result.command or "esca bench"


def setup_lines(result: BenchResult) -> list[str]:
    cfg, info = result.config, result.info
    lines = [f"pinning: {result.pinning.note}"]
    if cfg.server == "nginx":
        lines.append(
            f"nginx: master + {cfg.nginx_workers} worker{'s' if cfg.nginx_workers > 1 else ''}"
            " (worker_processes 1: one core for the server, one for wrk)"
        )
    busy = info.get("busy_before_start_pct")
    if busy is not None and busy > 10:
        lines.append(f"warning: the CPUs were {busy:.0f}% busy before the start (other load)")
    lines.append(
        f"machine: Linux {info.get('kernel')}, {info.get('cpus')} CPUs"
        f" ({info.get('cpu_model') or '?'}), {info.get('wrk_version')}, pyesca {info.get('pyesca')}"
    )
    return lines


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
            f"{'cpu us/req: server usr+sys':>28}{'wrk':>6}{'errors':>8}"
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
                f"{m.errors:>8}"
            )
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
            if warn:
                out.append(f"  {warn}")
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
        "errors: wrk's socket errors + non-2xx responses, over all wrk runs of the mode",
        "These are ratios on one machine, server and wrk sharing its cores over loopback;"
        " absolute requests/s are not comparable across machines.",
    ]


def format_markdown(result: BenchResult) -> str:
    out: list[str] = []
    for case in summarise(result):
        out.append(f"`{command_line(result)}`: {case_title(result, case)}; {result.pinning.note}.")
        out.append("")
        out.append(
            "| mode | requests/s (min–max) | transfer/s | ratio | kernel entries/req"
            " | deferred/req | mean batch | server CPU µs/req (usr+sys) | wrk CPU µs/req"
            " | latency avg | errors |"
        )
        out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for m in case.modes:
            rps, tps = m.requests_per_sec, m.transfer_per_sec
            rng = f"{_opt(rps, ',.0f')} ({rps.min:,.0f}–{rps.max:,.0f})" if rps else "-"
            lat = fmt_time(m.latency.avg_us) if m.latency else "-"
            out.append(
                f"| {m.mode} | {rng} | {fmt_bytes(tps.median) if tps else '-'}"
                f" | {_ratio(m, case.baseline)} | {_epr(m)}"
                f" | {_opt(m.deferred_per_request, '.2f')} | {_opt(m.mean_batch_size, '.2f')}"
                f" | {_cpu(m)} | {_opt(m.wrk_us, '.1f')} | {lat} | {m.errors} |"
            )
        if warn := disturbed_line(case):
            out += ["", warn[0].upper() + warn[1:] + "."]
        out.append("")
    return "\n".join(out)


def to_json(result: BenchResult) -> dict[str, Any]:
    cfg = result.config
    return {
        "schema": SCHEMA,
        "command": command_line(result),
        "interrupted": result.interrupted,
        "config": {
            "server": cfg.server,
            "modes": list(cfg.modes),
            "rounds": cfg.rounds,
            "duration": cfg.duration,
            "warmup": cfg.warmup,
            "perf_seconds": cfg.perf_seconds,
            "threads": cfg.threads,
            "connections": list(cfg.connections),
            "sizes": list(cfg.sizes),
            "nginx_workers": cfg.nginx_workers if cfg.server == "nginx" else None,
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
                "baseline": c.baseline,
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
