"""The experiment: one server, modes interleaved round by round, wrk against each.

A *run* is one server process in one mode: start it (pinned), warm it up
with a short wrk run, measure with wrk (nothing else attached), count its
kernel entries with perf in a second, shorter wrk run, fetch the file once and
compare its bytes, stop it by its pid and read the interposer's counters.
Rounds interleave the modes (A B C A B C ...) so that drift of the machine
hits them alike.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyesca.bench import perf
from pyesca.bench.servers import (
    CONFIGS,
    Docroot,
    ServerConfig,
    Server,
    ServerError,
    esca_command,
    file_name,
    make_docroot,
    server_version,
    start_on_free_port,
)
from pyesca.bench.wrk import WrkError, WrkResult, run_wrk, wrk_version
from pyesca.run import LEVERS, LEVERS_OFF


@dataclass(frozen=True)
class Mode:
    name: str
    esca_args: tuple[str, ...] | None  # None: the server without pyesca
    about: str
    env: tuple[str, ...] = ()  # NAME=VALUE for `esca run`'s environment


MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("vanilla", None, "the server as it is, no pyesca"),
        Mode(
            "vanilla-again",
            None,
            "the server as it is once more, in the same rounds: its ratio to vanilla"
            " is this run's noise floor (what a mode's ratio must exceed to mean anything)",
        ),
        Mode(
            "seed",
            ("--syscalls", "seed", "--levers", "none"),
            "only the seed's calls deferred: writev, send, sendfile, shutdown; no lever",
        ),
        Mode(
            "esca",
            (),
            "pyesca's default set (all interposed calls) and every lever, executor auto",
        ),
        Mode(
            "esca-base",
            ("--levers", "none"),
            "pyesca's default set, no lever beyond ESCA (batching alone)",
        ),
        *(
            Mode(
                f"esca-no-{lever}",
                ("--levers", f"all,-{lever}"),
                f"esca without the {lever} lever ({about})",
            )
            for lever, about in LEVERS.items()
        ),
        *(
            Mode(
                f"esca-{lever}",
                ("--levers", f"all,{lever}"),
                f"esca with the {lever} lever, off by default ({LEVERS[lever]})",
            )
            for lever in LEVERS
            if lever in LEVERS_OFF
        ),
        Mode(
            "esca-seq",
            ("--executor", "sequential"),
            "esca's set, sequential executor (one kernel entry per call): a control",
        ),
        Mode(
            "esca-plain",
            (),
            "esca with every flush run as plain syscalls (lever adapt's plain mode,"
            " forced through ESCA_ADAPT_TEST=plain): a control for what adapt chooses",
            ("ESCA_ADAPT_TEST=plain",),
        ),
    )
}
# The ablation: what each lever gives (esca against esca without it).
ABLATION_MODES = (
    "vanilla",
    "seed",
    "esca-base",
    *(f"esca-no-{lever}" for lever in LEVERS if lever not in LEVERS_OFF),
    *(f"esca-{lever}" for lever in LEVERS if lever in LEVERS_OFF),
    "esca",
)
DEFAULT_MODES = ("vanilla", "seed", "esca")

# Bounds on what one command may ask for.
MAX_ROUNDS = 100
MAX_SECONDS = 600
MAX_CONNECTIONS = 10000
MAX_SIZE = 64 << 20


def env_mode(spec: str) -> Mode:
    """`--env-mode NAME:VAR=V[,VAR=V]`: esca (every default) with those ESCA_*
    variables set, or BenchError (status 2)."""
    name, sep, rest = spec.partition(":")
    if not sep or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,31}", name):
        raise BenchError(
            f"--env-mode {spec!r}: NAME:VAR=V[,VAR=V], NAME in lower case letters,"
            " digits and '-'",
            2,
        )
    if name in MODES:
        raise BenchError(f"--env-mode: {name!r} is a mode already", 2)
    env = tuple(e.strip() for e in rest.split(",") if e.strip())
    for e in env:
        var, eq, _ = e.partition("=")
        if not eq or not re.fullmatch(r"ESCA_[A-Z0-9_]+", var):
            raise BenchError(f"--env-mode {name}: {e!r} is not ESCA_NAME=VALUE", 2)
    if not env:
        raise BenchError(f"--env-mode {name}: no variable given", 2)
    return Mode(name, (), "esca with " + " ".join(env), env)


class BenchError(Exception):
    """A reason not to run: one line, and the exit status (2: a bad option,
    1: something missing)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class BenchConfig:
    config: str = "lighttpd"  # a name of servers.CONFIGS
    modes: tuple[str, ...] = DEFAULT_MODES
    rounds: int = 3
    duration: int = 5
    warmup: int = 1
    perf_seconds: int = 2
    threads: int = 4
    connections: tuple[int, ...] = (50,)
    sizes: tuple[int, ...] = (20 << 10,)
    pin: bool = True

    @property
    def server_config(self) -> ServerConfig:
        return CONFIGS[self.config]

    @property
    def server(self) -> str:
        """lighttpd, nginx or asyncio: the program the config runs."""
        return self.server_config.kind

    def check(self) -> None:
        if self.config not in CONFIGS:
            raise BenchError(f"--config: choose from {', '.join(CONFIGS)}", 2)
        if not self.modes:
            raise BenchError("--modes: empty list", 2)
        for m in self.modes:
            if m not in MODES:
                raise BenchError(f"--modes: unknown mode {m!r} (choose from {', '.join(MODES)})", 2)
        if len(set(self.modes)) != len(self.modes):
            raise BenchError("--modes: a mode is listed twice", 2)
        checks = (
            ("--rounds", self.rounds, 1, MAX_ROUNDS),
            ("--duration", self.duration, 1, MAX_SECONDS),
            ("--warmup", self.warmup, 0, MAX_SECONDS),
            ("--perf-seconds", self.perf_seconds, 0, MAX_SECONDS),
            ("--threads", self.threads, 1, 256),
        )
        for name, v, lo, hi in checks:
            if not lo <= v <= hi:
                raise BenchError(f"{name}: {v} is not in {lo}..{hi}", 2)
        for c in self.connections:
            if not 1 <= c <= MAX_CONNECTIONS:
                raise BenchError(f"--connections: {c} is not in 1..{MAX_CONNECTIONS}", 2)
        for s in self.sizes:
            if not 0 <= s <= MAX_SIZE:
                raise BenchError(f"--size: {s} is not in 0..{MAX_SIZE}", 2)

    @property
    def cases(self) -> list[tuple[int, int]]:
        """(connections, size) pairs, in order; a config with a page of its
        own (nginx-debian) has that page's size only."""
        page = self.server_config.index_page
        sizes = (len(page[1]),) if page else self.sizes
        return [(c, s) for c in self.connections for s in sizes]

    @property
    def runs(self) -> int:
        return len(self.cases) * self.rounds * len(self.modes)

    def estimate_seconds(self) -> float:
        per_run = self.warmup + self.duration + self.perf_seconds + 1.5
        return self.runs * per_run


@dataclass
class Pinning:
    server_cpus: tuple[int, ...] = ()
    client_cpus: tuple[int, ...] = ()
    note: str = ""

    @classmethod
    def choose(cls, pin: bool = True) -> Pinning:
        if not pin:
            return cls((), (), "not pinned (--no-pin): the scheduler places server and wrk")
        try:
            cpus = sorted(os.sched_getaffinity(0))
        except OSError:
            cpus = list(range(os.cpu_count() or 1))
        if len(cpus) < 2:
            return cls((), (), f"not pinned: {len(cpus)} CPU, server and wrk share it")
        if shutil.which("taskset") is None:
            return cls((), (), "not pinned: taskset not found (util-linux)")
        srv, cli = (cpus[0],), tuple(cpus[1:])
        return cls(
            srv,
            cli,
            f"server on CPU {_cpus(srv)} (taskset -c {_cpus(srv)}),"
            f" wrk on CPU {_cpus(cli)} (taskset -c {_cpus(cli)})",
        )

    def prefix(self) -> list[str]:
        return ["taskset", "-c", _cpus(self.server_cpus)] if self.server_cpus else []


def _cpus(cpus: Sequence[int]) -> str:
    return ",".join(map(str, cpus))


@dataclass
class RunRecord:
    """One server process in one mode: what wrk, perf and the interposer saw."""

    mode: str
    round: int
    connections: int
    size: int
    measured: WrkResult | None = None
    warmup: WrkResult | None = None
    count_run: WrkResult | None = None
    kernel_entries: int | None = None
    kernel_entries_reason: str = ""
    perf_pids: tuple[int, ...] = ()
    stats: dict[str, Any] | None = None  # pyesca.stats ProcessStats.to_dict() of the total
    stats_error: str = ""
    requests_total: int = 0
    verified: bool | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    other_cpu: float | None = None  # CPUs others used during the measured run
    steal_cpu: float | None = None  # CPUs the hypervisor withheld (steal time)
    seconds: float = 0.0
    # CPU time per request in the measured run, microseconds: the server's
    # user and system time (all its processes), and wrk's
    server_user_us: float | None = None
    server_sys_us: float | None = None
    wrk_us: float | None = None
    server_processes: int = 0  # the server's processes during the measured run

    @property
    def wrk_errors(self) -> int:
        runs = (self.warmup, self.measured, self.count_run)
        return sum(r.errors for r in runs if r is not None)

    @property
    def requests_per_sec(self) -> float:
        return self.measured.requests_per_sec if self.measured else 0.0

    @property
    def deferred_per_request(self) -> float | None:
        if not self.stats or not self.requests_total:
            return None
        return float(self.stats.get("deferred", 0)) / self.requests_total

    @property
    def entries_per_request(self) -> float | None:
        r = self.count_run
        if self.kernel_entries is None or r is None or r.requests <= 0:
            return None
        return self.kernel_entries / r.requests

    def to_dict(self) -> dict[str, Any]:
        def wrk(r: WrkResult | None) -> dict[str, Any] | None:
            return r.to_dict() if r is not None else None

        s = self.stats or {}
        return {
            "mode": self.mode,
            "round": self.round,
            "connections": self.connections,
            "size": self.size,
            "requests_per_sec": self.measured.requests_per_sec if self.measured else 0.0,
            "transfer_per_sec": self.measured.transfer_per_sec if self.measured else 0.0,
            "measured": wrk(self.measured),
            "warmup": wrk(self.warmup),
            "count_run": wrk(self.count_run),
            "errors": self.wrk_errors,
            "kernel_entries": self.kernel_entries,
            "kernel_entries_per_request": self.entries_per_request,
            "kernel_entries_reason": self.kernel_entries_reason,
            "perf_pids": list(self.perf_pids),
            "requests_total": self.requests_total,
            "deferred_per_request": self.deferred_per_request,
            "mean_batch_size": s.get("mean_batch_size") if s else None,
            "executor": s.get("executor") if s else None,
            "stats": self.stats,
            "stats_error": self.stats_error,
            "verified": self.verified,
            "problems": self.problems,
            "notes": self.notes,
            "other_cpu": None if self.other_cpu is None else round(self.other_cpu, 3),
            "steal_cpu": None if self.steal_cpu is None else round(self.steal_cpu, 3),
            "server_user_us_per_request": self.server_user_us,
            "server_sys_us_per_request": self.server_sys_us,
            "wrk_us_per_request": self.wrk_us,
            "server_processes": self.server_processes,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class BenchResult:
    config: BenchConfig
    pinning: Pinning
    info: dict[str, Any]
    records: list[RunRecord]
    command: str = ""
    interrupted: bool = False


Progress = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _checkout(start: Path) -> Path | None:
    """The pyesca source checkout `start` is in, if any."""
    for d in (start, *start.parents):
        if (d / ".git").exists():
            return d if (d / "src" / "pyesca" / "cli.py").is_file() else None
    return None


def source_commit() -> dict[str, str]:
    """What was measured: `git describe` of the pyesca checkout this runs from
    (the installed package's directory, else the current directory, when it is
    inside one), else the installed package's version."""
    import pyesca

    version = str(getattr(pyesca, "__version__", "?"))
    for start in (Path(pyesca.__file__).resolve().parent, Path.cwd()):
        root = _checkout(start)
        if root is None:
            continue
        try:
            p = subprocess.run(
                ["git", "-C", str(root), "describe", "--always", "--dirty", "--tags"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if p.returncode == 0 and p.stdout.strip():
            return {
                "commit": p.stdout.strip(),
                "source": f"git describe in {root}",
                "version": version,
            }
    return {"commit": f"pyesca {version}", "source": "package version", "version": version}


def loadavg() -> str:
    """/proc/loadavg's three load averages, as `uptime` prints them."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def machine_info(cfg: BenchConfig) -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except OSError:
        usable = os.cpu_count() or 0
    commit = source_commit()
    return {
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "vcpus_usable": usable,
        "python": platform.python_version(),
        "pyesca": commit["version"],
        "commit": commit["commit"],
        "commit_source": commit["source"],
        "server_version": (
            f"Python {platform.python_version()} asyncio"
            if cfg.server == "asyncio"
            else server_version(cfg.server)
        ),
        "wrk_version": wrk_version(),
        "loadavg_start": loadavg(),
    }


def _cpu_times() -> tuple[int, int, int]:
    """(busy, total, steal) jiffies of all CPUs, from /proc/stat.  Busy leaves
    out interrupt and softirq time (the kernel accounts it to no process, and
    on loopback it is mostly the measured run's own network work) and steal
    (a VM's vCPU waiting for the host: no process of this machine ran then);
    guest time is already inside user time."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    fields = fields[:8]  # user nice system idle iowait irq softirq steal
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    irq = sum(fields[5:7])  # irq + softirq
    steal = fields[7] if len(fields) > 7 else 0
    return sum(fields) - idle - irq - steal, sum(fields), steal


def _softirqd_ticks() -> int:
    """CPU time (ticks) of the kernel's ksoftirqd threads: where softirq work
    (the loopback network path of the server and wrk) goes when it piles up."""
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if not (d / "comm").read_text().startswith("ksoftirqd/"):
                continue
            stat = (d / "stat").read_text()
        except OSError:
            continue
        f = stat[stat.rfind(")") + 2 :].split()
        total += int(f[11]) + int(f[12])
    return total


@dataclass
class CpuSnapshot:
    """What the machine and our own processes had used, in seconds, at one moment."""

    when: float
    busy: float  # all CPUs, busy time (not idle/iowait)
    server: float  # the server's processes (all their threads)
    children: float  # this process's waited-for children (wrk)
    server_user: float = 0.0  # of server: user time
    server_sys: float = 0.0  # of server: system time
    softirqd: float = 0.0  # the kernel's ksoftirqd threads: network work
    # of the server and wrk deferred to them (loopback), not other load
    steal: float = 0.0  # all CPUs, steal time: the host ran something else
    @classmethod
    def take(cls, pids: Sequence[int]) -> CpuSnapshot | None:
        tick = os.sysconf("SC_CLK_TCK")
        try:
            busy, _, steal = _cpu_times()
            user = system = 0
            for pid in pids:
                stat = Path(f"/proc/{pid}/stat").read_text()
                f = stat[stat.rfind(")") + 2 :].split()
                user += int(f[11])  # utime
                system += int(f[12])  # stime
        except (OSError, ValueError, IndexError):
            return None
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return cls(
            time.monotonic(),
            busy / tick,
            (user + system) / tick,
            ru.ru_utime + ru.ru_stime,
            user / tick,
            system / tick,
            _softirqd_ticks() / tick,
            steal / tick,
        )


def other_cpu(a: CpuSnapshot | None, b: CpuSnapshot | None) -> float | None:
    """CPUs (0.25 = a quarter of one) used by processes other than the server
    and wrk between two snapshots: load that disturbs the measurement."""
    if a is None or b is None or b.when <= a.when:
        return None
    other = (
        (b.busy - a.busy)
        - (b.server - a.server)
        - (b.children - a.children)
        - (b.softirqd - a.softirqd)
    )
    return max(0.0, other / (b.when - a.when))


def steal_cpu(a: CpuSnapshot | None, b: CpuSnapshot | None) -> float | None:
    """CPUs (0.25 = a quarter of one) the hypervisor withheld from this VM
    between two snapshots (steal time): the server and wrk were runnable and
    did not run, which disturbs a measurement as other load does."""
    if a is None or b is None or b.when <= a.when:
        return None
    return max(0.0, (b.steal - a.steal) / (b.when - a.when))


def busy_percent(seconds: float = 1.0) -> float | None:
    """How busy the machine's CPUs are (0-100) over `seconds`, before we start."""
    try:
        b0, t0, _ = _cpu_times()
        time.sleep(seconds)
        b1, t1, _ = _cpu_times()
    except (OSError, ValueError, IndexError):
        return None
    return 100.0 * (b1 - b0) / (t1 - t0) if t1 > t0 else None


def check_tools(cfg: BenchConfig) -> None:
    """BenchError (status 2, one line) for a missing server binary or wrk."""
    sc = cfg.server_config
    if sc.kind != "asyncio" and shutil.which(sc.binary) is None:
        raise BenchError(f"{sc.binary} not found ({sc.install_hint})", 2)
    if shutil.which("wrk") is None:
        raise BenchError("wrk not found (apt-get install wrk)", 2)
    if any(MODES[m].esca_args is not None for m in cfg.modes):
        from pyesca.run import library_path

        lib = library_path()
        if not lib.is_file():
            raise BenchError(f"libesca.so not found at {lib}: run 'make build'")


def raise_fd_limit(connections: int) -> None:
    """wrk and the server each need about one fd per connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * connections + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM to `esca bench` stops what it started, as Ctrl-C does."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def server_argv(
    cfg: BenchConfig,
    mode: Mode,
    pin: Pinning,
    docroot: Path,
    port: int,
    workdir: Path,
    stats: Path,
    connections: int,
) -> list[str]:
    cmd = cfg.server_config.make(docroot, port, workdir, max_connections=connections)
    if mode.esca_args is not None:
        cmd = [*esca_command(), "run", *mode.esca_args, "--stats", str(stats), "--", *cmd]
        if mode.env:
            cmd = ["env", *mode.env, *cmd]
    return [*pin.prefix(), *cmd]


WORKERS_TIMEOUT = 5.0


def wait_processes(srv: Server, sc: ServerConfig) -> bool:
    """Wait until nginx's master has forked all its workers (the port accepts
    before they exist), so the CPU and perf accounting covers them all."""
    if sc.kind != "nginx" or not sc.workers:
        return True
    workers = (os.cpu_count() or 1) if sc.workers == "auto" else int(sc.workers)
    deadline = time.monotonic() + WORKERS_TIMEOUT
    while len(srv.pids()) < 1 + workers:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def fetch_and_compare(port: int, name: str, sha256: str, timeout: float = 10.0) -> str:
    """'' when GET /name returns 200 and the file's bytes, else what differed
    (name '' is GET /, the index page)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", f"/{name}")
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        return f"GET /{name}: {exc}"
    finally:
        conn.close()
    if resp.status != 200:
        return f"GET /{name}: status {resp.status}"
    if hashlib.sha256(body).hexdigest() != sha256:
        return f"GET /{name}: {len(body)} bytes, not the file's"
    return ""


def one_run(
    cfg: BenchConfig,
    mode: Mode,
    rnd: int,
    connections: int,
    size: int,
    docroot: Docroot,
    pin: Pinning,
    workdir: Path,
    perf_reason: str,
) -> RunRecord:
    rec = RunRecord(mode.name, rnd, connections, size)
    page = cfg.server_config.index_page
    name = page[0] if page else file_name(size)
    path = "" if page else name  # GET / for a config's own index page
    stats = workdir / "esca-stats.json"
    t0 = time.monotonic()
    try:
        srv: Server = start_on_free_port(
            cfg.server,
            mode.name,
            workdir,
            lambda port: server_argv(
                cfg, mode, pin, docroot.path, port, workdir, stats, connections
            ),
            stats if mode.esca_args is not None else None,
        )
    except ServerError as exc:
        lines = str(exc).splitlines()
        why = next((ln for ln in lines[1:] if re.search(r"emerg|error|Error", ln)), "")
        rec.problems.append(
            f"server did not start: {lines[0]}" + (f": {why.strip()}" if why else "")
        )
        rec.seconds = time.monotonic() - t0
        return rec
    url = f"{srv.url}/{path}"
    if not wait_processes(srv, cfg.server_config):
        rec.notes.append(f"not all nginx workers were up after {WORKERS_TIMEOUT:.0f} s")

    def wrk(seconds: int) -> WrkResult:
        return run_wrk(
            url,
            threads=cfg.threads,
            connections=connections,
            seconds=seconds,
            cpus=pin.client_cpus,
        )

    try:
        try:
            if cfg.warmup:
                rec.warmup = wrk(cfg.warmup)
            pids = srv.pids()
            rec.server_processes = len(pids)
            before = CpuSnapshot.take(pids)
            rec.measured = wrk(cfg.duration)
            after = CpuSnapshot.take(pids)
            rec.other_cpu = other_cpu(before, after)
            rec.steal_cpu = steal_cpu(before, after)
            n = rec.measured.requests
            if before is not None and after is not None and n > 0:
                rec.server_user_us = round((after.server_user - before.server_user) / n * 1e6, 3)
                rec.server_sys_us = round((after.server_sys - before.server_sys) / n * 1e6, 3)
                rec.wrk_us = round((after.children - before.children) / n * 1e6, 3)
            if perf_reason:
                rec.kernel_entries_reason = perf_reason
            else:
                rec.perf_pids = tuple(srv.pids())
                rec.count_run, pc = perf.count_during(rec.perf_pids, lambda: wrk(cfg.perf_seconds))
                rec.kernel_entries, rec.kernel_entries_reason = pc.count, pc.reason
            why = fetch_and_compare(srv.port, path, docroot.sha256[name])
            rec.verified = not why
            if why:
                rec.problems.append(why)
        except WrkError as exc:
            rec.problems.append(str(exc).splitlines()[0])
    finally:
        status = srv.stop()
    problems = srv.problems(status)
    if note := srv.benign_exit(status):
        rec.notes.append(note)
    rec.problems += problems
    rec.requests_total = sum(
        r.requests for r in (rec.warmup, rec.measured, rec.count_run) if r is not None
    ) + (1 if rec.verified else 0)
    if mode.esca_args is not None:
        from pyesca import stats as esca_stats

        try:
            rec.stats = esca_stats.load(stats).total.to_dict()
        except (OSError, esca_stats.StatsError) as exc:
            rec.stats_error = str(exc)
            rec.problems.append(f"no interposer counters: {exc}")
    rec.seconds = time.monotonic() - t0
    return rec


def run(cfg: BenchConfig, progress: Progress = _stderr) -> BenchResult:
    """Run the whole experiment.  Ctrl-C (or SIGTERM) stops it: the server of
    the current run is stopped and the runs done so far are returned, with
    `interrupted` set."""
    cfg.check()
    check_tools(cfg)
    raise_fd_limit(max(cfg.connections))
    pin = Pinning.choose(cfg.pin)
    info = machine_info(cfg)
    perf_reason = ""
    if cfg.perf_seconds:
        perf_reason = perf.probe()
    else:
        perf_reason = "not counted (--perf-seconds 0)"
    info["perf"] = perf_reason or f"perf stat -e {perf.EVENT} -p PID"
    result = BenchResult(cfg, pin, info, [])
    progress(
        f"esca bench: {cfg.config} ({info['server_version']}), modes {', '.join(cfg.modes)};"
        f" {cfg.runs} runs of ~{cfg.warmup + cfg.duration + cfg.perf_seconds} s,"
        f" about {cfg.estimate_seconds() / 60:.1f} min"
    )
    cost = perf.entry_cost()
    info["kernel_entry"] = cost.to_dict()
    progress(
        f"esca bench: a kernel entry costs {cost.ns:.0f} ns here ({cost.method});"
        f" load average {info['loadavg_start']}"
    )
    progress(f"esca bench: pinning: {pin.note}")
    busy = busy_percent()
    info["busy_before_start_pct"] = None if busy is None else round(busy, 1)
    if busy is not None and busy > 10:
        progress(
            f"esca bench: warning: the CPUs were {busy:.0f}% busy before the start;"
            " other load makes the numbers noisy"
        )
    if perf_reason:
        progress(f"esca bench: kernel entries: n/a: {perf_reason}")
    done = 0
    with tempfile.TemporaryDirectory(prefix="esca-bench-") as tmp, _sigterm_as_interrupt():
        root = Path(tmp)
        page = cfg.server_config.index_page
        if page:
            docroot = make_docroot(root / "www", {})
            (docroot.path / page[0]).write_bytes(page[1])
            docroot.sha256[page[0]] = hashlib.sha256(page[1]).hexdigest()
            docroot.sizes[page[0]] = len(page[1])
        else:
            docroot = make_docroot(root / "www", {file_name(s): s for s in cfg.sizes})
        try:
            for ci, (conns, size) in enumerate(cfg.cases):
                for rnd in range(1, cfg.rounds + 1):
                    for m in cfg.modes:
                        done += 1
                        workdir = root / f"c{ci}-r{rnd}-{m}"
                        rec = one_run(
                            cfg, MODES[m], rnd, conns, size, docroot, pin, workdir, perf_reason
                        )
                        result.records.append(rec)
                        progress(_progress_line(cfg, rec, done, conns, size))
        except KeyboardInterrupt:  # what ran is reported; the caller exits 130
            result.interrupted = True
    # measured again at the end: the lower of the two is the less disturbed
    again = perf.entry_cost()
    info["kernel_entry"]["ns_end"] = round(again.ns, 1)
    if again.ns < cost.ns:
        info["kernel_entry"].update(again.to_dict(), ns_end=round(again.ns, 1))
    info["loadavg_end"] = loadavg()
    return result


def _progress_line(cfg: BenchConfig, rec: RunRecord, done: int, conns: int, size: int) -> str:
    case = f" c{conns} {size} B" if len(cfg.cases) > 1 else ""
    rps = rec.measured.requests_per_sec if rec.measured else 0.0
    epr = rec.entries_per_request
    bits = [f"{rps:,.0f} req/s"]
    bits.append(f"{epr:.2f} entries/req" if epr is not None else "entries/req n/a")
    bits.append(f"{rec.wrk_errors} errors")
    if rec.other_cpu is not None and rec.other_cpu > 0.1:
        bits.append(f"other load {rec.other_cpu:.2f} CPU")
    if rec.steal_cpu is not None and rec.steal_cpu > 0.1:
        bits.append(f"steal {rec.steal_cpu:.2f} CPU")
    if rec.problems:
        bits.append("PROBLEM: " + "; ".join(rec.problems))
    return (
        f"[{done}/{cfg.runs}] round {rec.round}/{cfg.rounds}{case} {rec.mode:<8}"
        f" ... {', '.join(bits)} ({rec.seconds:.1f} s)"
    )
