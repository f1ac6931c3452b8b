#!/usr/bin/env python3
"""Redis and memcached under `esca run`, against themselves plainly.

`esca bench` loads HTTP servers with wrk; the two key-value servers users
run beside them have load generators of their own, which this script drives
in interleaved rounds (every mode once a round, in turn):

    redis      redis-server (one event-loop thread, --save '' --appendonly no),
               loaded by redis-benchmark -t get,set (-c clients, --threads T,
               -P pipeline, -d value size)
    memcached  memcached -t 4 (libevent worker threads), loaded by memcslap
               -t get|set (-c client threads, blocking, one request a trip)

Per mode and round: requests a second (the load generator's count over the
wall time of its run), the server's CPU a request (utime + stime of every
thread, /proc/PID/stat, over the same run), and in a second, shorter run of
the same load the server's kernel entries a request (perf stat -e
raw_syscalls:sys_enter; counting costs the traced process, so not in the
timed run).  Before and after each run a client stores a value and reads it
back byte for byte.  Each esca run's stats file gives the calls deferred a
request.  Ratios are to vanilla's in the same round; the table shows their
medians and ranges, and the machine (CPU model, a bare kernel entry's cost).

    .venv/bin/python benchmarks/kv.py --server redis --rounds 5
    .venv/bin/python benchmarks/kv.py --server memcached --no-pin --json out.json
    .venv/bin/python benchmarks/kv.py --server redis \\
        --env-mode noadapt:ESCA_ADAPT=0 --rounds 3

Pinned (the default): the server on CPU 0, the load generator on CPU 1.
Exit status 0; 1 when a run failed (an error, a wrong byte, a server that
did not start); 2 for a missing program or a bad argument.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyesca.bench.perf import count_during, entry_cost
from pyesca.bench.runner import BenchError, env_mode, loadavg, source_commit
from pyesca.bench.servers import Server, ServerError, esca_command, start_on_free_port

LOAD_TIMEOUT = 300.0


@dataclass(frozen=True)
class KvMode:
    name: str
    env: tuple[str, ...] = ()  # ESCA_*=V for esca run; vanilla: none
    esca: bool = True


def modes_from(names: str, env_specs: list[str]) -> list[KvMode]:
    extra = {m.name: KvMode(m.name, m.env) for m in map(env_mode, env_specs)}
    out = []
    for name in [n.strip() for n in names.split(",") if n.strip()] + list(extra):
        if name == "vanilla":
            out.append(KvMode("vanilla", esca=False))
        elif name == "esca":
            out.append(KvMode("esca"))
        elif name in extra:
            if extra[name] not in out:
                out.append(extra[name])
        else:
            raise BenchError(f"--modes: unknown mode {name!r} (vanilla, esca, or --env-mode)", 2)
    if not out or out[0].name != "vanilla":
        raise BenchError("--modes: the first mode must be vanilla (the ratios' base)", 2)
    return out


# ------------------------------------------------------------------ servers


def server_argv(kind: str, port: int, workdir: Path, extra: tuple[str, ...] = ()) -> list[str]:
    if kind == "redis":
        return [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(workdir),
            "--logfile", "", *extra,
        ]  # fmt: skip
    argv = ["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-t", "4"]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]  # memcached refuses root without it
    return argv + list(extra)


def command(
    kind: str, mode: KvMode, port: int, workdir: Path, cpu: str | None, extra: tuple[str, ...]
) -> list[str]:
    argv = server_argv(kind, port, workdir, extra)
    if mode.esca:
        argv = [*esca_command(), "run", "--stats", str(workdir / "stats.json"), "--", *argv]
    return (["taskset", "-c", cpu] if cpu else []) + argv


def cpu_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime, stime: every thread's


# --------------------------------------------------------------- the check


def _recv_until(s: socket.socket, done: bytes, limit: int) -> bytes:
    buf = b""
    while not buf.endswith(done):
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError(f"connection closed after {len(buf)} B")
        buf += chunk
        if len(buf) > limit:
            raise RuntimeError("reply longer than asked for")
    return buf


def check_value(kind: str, port: int, size: int = 100_000) -> None:
    """Store a random value and read it back, byte for byte."""
    value = secrets.token_hex(size // 2).encode()
    key = b"esca-kv-check"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        if kind == "redis":
            s.sendall(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                      % (len(key), key, len(value), value))  # fmt: skip
            if _recv_until(s, b"\r\n", 64) != b"+OK\r\n":
                raise RuntimeError("SET: no +OK")
            s.sendall(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key))
            want = b"$%d\r\n%s\r\n" % (len(value), value)
        else:
            s.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value))
            if _recv_until(s, b"\r\n", 64) != b"STORED\r\n":
                raise RuntimeError("set: not STORED")
            s.sendall(b"get %s\r\n" % key)
            want = b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (key, len(value), value)
        got = _recv_until(s, want[-7:], len(want))
        if got != want:
            raise RuntimeError(f"value read back differs ({len(got)} B, {len(want)} B stored)")


# ------------------------------------------------------------------ the load


@dataclass
class Load:
    kind: str
    requests: int
    clients: int
    threads: int
    pipeline: int
    size: int
    test: str
    cpu: str | None

    def argv(self, port: int, requests: int) -> list[str]:
        pin = ["taskset", "-c", self.cpu] if self.cpu else []
        if self.kind == "redis":
            return [*pin, "redis-benchmark", "-h", "127.0.0.1", "-p", str(port),
                    "-c", str(self.clients), "-n", str(requests), "-t", self.test,
                    "-P", str(self.pipeline), "-d", str(self.size), "--threads",
                    str(self.threads), "-q", "--csv"]  # fmt: skip
        return [*pin, "memcslap", f"--servers=127.0.0.1:{port}", f"--test={self.test}",
                f"--concurrency={self.clients}", f"--execute-number={requests}"]  # fmt: skip

    def total(self, requests: int) -> int:
        """Requests one run makes: redis-benchmark's -n is per test, memcslap's
        --execute-number per client thread."""
        if self.kind == "redis":
            return requests * len(self.test.split(","))
        return requests * self.clients

    def run(self, port: int, requests: int) -> tuple[int, float, str]:
        """(requests made, seconds, problem or "")."""
        t0 = time.monotonic()
        p = subprocess.run(self.argv(port, requests), capture_output=True, text=True,
                           timeout=LOAD_TIMEOUT, check=False)  # fmt: skip
        secs = time.monotonic() - t0
        out = p.stdout + p.stderr
        if p.returncode != 0:
            return 0, secs, f"load exited {p.returncode}: {out.strip()[-200:]}"
        if self.kind == "redis":
            # redis-benchmark stops at the first error reply (exit status 1)
            bad = [ln for ln in out.splitlines() if "ERR" in ln or "rror" in ln]
            return self.total(requests), secs, "; ".join(bad[:3])
        if "rror" in out or "FAIL" in out:
            lines = [ln for ln in out.splitlines() if "rror" in ln or "FAIL" in ln]
            return 0, secs, "; ".join(lines[:3])
        return self.total(requests), secs, ""


# ------------------------------------------------------------------ one run


@dataclass
class RunRecord:
    mode: str
    round: int
    rps: float = 0.0
    cpu_us: float = 0.0
    entries: float | None = None
    deferred: float | None = None
    problems: list[str] = field(default_factory=list)


def stats_deferred(path: Path) -> int | None:
    total = None
    for f in [path, *path.parent.glob(path.name + ".*")]:
        try:
            d = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        total = (total or 0) + int(d.get("deferred", 0))
    return total


def one_run(
    kind: str, mode: KvMode, rnd: int, load: Load, pin: bool, extra: tuple[str, ...] = ()
) -> RunRecord:
    rec = RunRecord(mode.name, rnd)
    hz = os.sysconf("SC_CLK_TCK")
    warm, quarter = max(1, load.requests // 10), max(1, load.requests // 4)
    with tempfile.TemporaryDirectory(prefix="esca-kv-") as tmp:
        work = Path(tmp)

        def argv(port: int) -> list[str]:
            cmd = command(kind, mode, port, work, "0" if pin else None, extra)
            return ["env", *mode.env, *cmd] if mode.env else cmd  # exec'd: one pid

        srv: Server | None = None
        try:
            srv = start_on_free_port(kind, mode.name, work, argv)
            pid, port = srv.pid, srv.port
            check_value(kind, port)
            load.run(port, warm)
            t0 = cpu_ticks(pid)
            n, secs, why = load.run(port, load.requests)
            t1 = cpu_ticks(pid)
            if why:
                rec.problems.append(why)
            if n:
                rec.rps = n / secs
                rec.cpu_us = (t1 - t0) * 1e6 / hz / n
            (n2, _, why2), count = count_during([pid], lambda: load.run(port, quarter))
            if why2:
                rec.problems.append(why2)
            if count.count is not None and n2:
                rec.entries = count.count / n2
            check_value(kind, port)
        except (RuntimeError, OSError, subprocess.TimeoutExpired, ServerError) as exc:
            rec.problems.append(str(exc))
        finally:
            if srv is not None:
                rec.problems += srv.problems(srv.stop())
        if mode.esca:
            d = stats_deferred(work / "stats.json")
            if d is not None and rec.rps:
                # the stats count the warm-up, the timed run and perf's run
                made = load.total(warm) + load.total(load.requests) + load.total(quarter)
                rec.deferred = d / made
    return rec


# ------------------------------------------------------------------ report


def median_range(xs: list[float]) -> str:
    if not xs:
        return "-"
    return f"{statistics.median(xs):.2f}x [{min(xs):.2f}-{max(xs):.2f}]"


def report(records: list[RunRecord], modes: list[KvMode]) -> tuple[str, dict[str, Any]]:
    by: dict[tuple[str, int], RunRecord] = {(r.mode, r.round): r for r in records}
    rounds = sorted({r.round for r in records})
    lines = [
        "| mode | req/s (vanilla's median) | ratio | CPU/req us | ratio | entries/req | ratio"
        " | deferred/req | problems |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    summary: dict[str, Any] = {}
    for m in modes:
        mine = [by[(m.name, i)] for i in rounds if (m.name, i) in by]
        base = [by.get(("vanilla", i)) for i in rounds]
        pairs = [(a, b) for a, b in zip(mine, base, strict=False) if b and a.rps and b.rps]
        rps = [a.rps / b.rps for a, b in pairs]
        cpu = [a.cpu_us / b.cpu_us for a, b in pairs if b.cpu_us]
        ent = [a.entries / b.entries for a, b in pairs if a.entries and b.entries]
        med = statistics.median
        ok = [r for r in mine if r.rps]
        dfr = [r.deferred for r in mine if r.deferred is not None]
        probs = sum(len(r.problems) for r in mine)
        entries = [r.entries for r in ok if r.entries is not None]
        lines.append(
            f"| {m.name} | {med([r.rps for r in ok]):,.0f} | {median_range(rps)}"
            f" | {med([r.cpu_us for r in ok]):.2f} | {median_range(cpu)}"
            f" | {(f'{med(entries):.2f}' if entries else '-')} | {median_range(ent)}"
            f" | {(f'{med(dfr):.2f}' if dfr else '-')} | {probs} |"
            if ok
            else f"| {m.name} | - | - | - | - | - | - | - | {probs} |"
        )
        summary[m.name] = {
            "rps_ratio_rounds": rps,
            "cpu_ratio_rounds": cpu,
            "entries_ratio_rounds": ent,
            "deferred_per_request": dfr,
            "problems": [p for r in mine for p in r.problems],
        }
    return "\n".join(lines), summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", choices=("redis", "memcached"), default="redis")
    ap.add_argument("--modes", default="vanilla,esca", help="comma list (default: %(default)s)")
    ap.add_argument("--env-mode", action="append", default=[], metavar="NAME:VAR=V",
                    help="a mode of its own: esca with these ESCA_* variables")  # fmt: skip
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=0,
                    help="requests a run (redis: per test; memcached: per client thread;"
                         " default 200000 and 20000)")  # fmt: skip
    ap.add_argument("--clients", type=int, default=0, help="default: redis 50, memcached 8")
    ap.add_argument("--threads", type=int, default=1, help="redis-benchmark --threads")
    ap.add_argument("--pipeline", type=int, default=1, help="redis-benchmark -P")
    ap.add_argument("--size", type=int, default=100, help="redis-benchmark -d (bytes)")
    ap.add_argument("--test", default="", help="redis: get,set (default); memcached: get")
    ap.add_argument("--server-args", default="", metavar="ARGS",
                    help="more arguments for the server, e.g. '--io-threads 2'")  # fmt: skip
    ap.add_argument("--no-pin", action="store_true", help="let the scheduler place both")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    a = ap.parse_args(argv)
    try:
        modes = modes_from(a.modes, a.env_mode)
        if not 1 <= a.rounds <= 100:
            raise BenchError("--rounds: 1 to 100", 2)
        need = ["redis-server", "redis-benchmark"]
        if a.server == "memcached":
            need = ["memcached", "memcslap"]
        for exe in need + ([] if a.no_pin else ["taskset"]):
            if shutil.which(exe) is None:
                raise BenchError(f"{exe} not installed (apt-get install redis-server"
                                 " memcached libmemcached-tools)", 2)  # fmt: skip
        if not a.no_pin and len(os.sched_getaffinity(0)) < 2:
            raise BenchError("pinning needs 2 CPUs: use --no-pin", 2)
    except BenchError as exc:
        print(f"kv: {exc}", file=sys.stderr)
        return exc.status
    redis = a.server == "redis"
    load = Load(
        a.server,
        a.requests or (200_000 if redis else 20_000),
        a.clients or (50 if redis else 8),
        a.threads,
        a.pipeline,
        a.size,
        a.test or ("get,set" if redis else "get"),
        None if a.no_pin else "1",
    )
    cost = entry_cost(samples=2)
    start = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    records = []
    for rnd in range(a.rounds):
        for m in modes:
            rec = one_run(a.server, m, rnd, load, not a.no_pin, tuple(a.server_args.split()))
            records.append(rec)
            print(f"kv: round {rnd + 1}/{a.rounds} {m.name}: {rec.rps:,.0f} req/s,"
                  f" {rec.cpu_us:.2f} us CPU a request, entries/req "
                  f"{rec.entries if rec.entries is None else round(rec.entries, 2)}"
                  + (f"; PROBLEM: {rec.problems}" if rec.problems else ""),
                  file=sys.stderr, flush=True)  # fmt: skip
    table, summary = report(records, modes)
    model = next((ln.split(":", 1)[1].strip() for ln in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), "?")  # fmt: skip
    ver = subprocess.run([need[0], "--version"], capture_output=True, text=True, check=False)
    machine = (f"{model}, {os.cpu_count()} CPUs, Linux {os.uname().release}, a kernel entry"
               f" {cost.ns:.1f} ns, load {loadavg()}")  # fmt: skip
    cmd = "benchmarks/kv.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(table)
    print(f"\n{start}, pyesca {source_commit()['commit']}, {ver.stdout.strip()[:60]};"
          f" {machine}; {'not pinned' if a.no_pin else 'server on CPU 0, load on CPU 1'};"
          f" {cmd}")  # fmt: skip
    if a.json:
        Path(a.json).write_text(json.dumps({
            "command": cmd, "start": start, "commit": source_commit()["commit"],
            "server_version": ver.stdout.strip(), "machine": machine,
            "kernel_entry_ns": round(cost.ns, 1), "pinned": not a.no_pin,
            "load": load.__dict__, "summary": summary,
            "records": [r.__dict__ for r in records], "table": table,
        }, indent=1) + "\n")  # fmt: skip
    bad = [r for r in records if r.problems]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
