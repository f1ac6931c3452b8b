#!/usr/bin/env python3
"""Micro-benchmark: per-op cost of a plain call from Python vs the same op batched.

Cases (64-byte payload):
  send      ``sock.send`` on one unix socketpair vs ``b.send`` flushed every N ops
  send-rr   the same, round-robin over N distinct socketpairs (one op per fd a batch,
            so no same-fd chain or coalescing can explain a gain)
  write     ``os.write`` on a pipe vs ``b.write``
  send_many ``b.send_many`` to 1,000 socketpairs vs a Python loop of ``sock.send``

for executors ``uring`` and ``sequential`` (the control: one syscall per op, no
gain expected).  Each round alternates direct and batched chunks (A B, B A, ...;
a chunk is 256 ops, or one send_many call), so both sides see the same host noise.
A side's ns/op in a round is the median over its chunks; the table shows the
median over rounds with [min-max], and the ratio is the median of the per-round
batched/direct ratios.  Only the calls are timed: the peers are drained after each
A B pair (send_many: after every 4th pair, so a peer holds at most 8 x 64 B) so
buffers never fill.  Kernel entries per op come from ``Batch.stats()`` (a direct
call is 1 by definition); the bytes the peers received are checked against the
bytes sent (exit status 1 on a mismatch or an op error).

    .venv/bin/python benchmarks/micro.py                # ~30 s
    .venv/bin/python benchmarks/micro.py --quick        # a few seconds
    .venv/bin/python benchmarks/micro.py --json out.json
"""

from __future__ import annotations

import argparse
import fcntl
import gc
import json
import os
import platform
import resource
import socket
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyesca

PAYLOAD = b"x" * 64
SIZES = (1, 4, 16, 64, 256)
CHUNK = 256  # ops timed back to back between two drains (a multiple of every size)
MANY = 1000  # sockets of the send_many case
MANY_DRAIN_EVERY = 4  # send_many chunk pairs between drains (--many-drain)
BIG_SNDBUF = 4 << 20  # lets a whole chunk of 64-byte sends sit unread in one socket
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

now = time.perf_counter_ns


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- fixtures


class Drain:
    """The read ends: emptied between timed chunks; counts the bytes it got."""

    def __init__(self, fds: Sequence[int]) -> None:
        self.fds = list(fds)
        self.buf = bytearray(1 << 20)
        self.got = 0
        for fd in self.fds:
            os.set_blocking(fd, False)

    def __call__(self) -> None:
        view = memoryview(self.buf)
        for fd in self.fds:
            while True:
                try:
                    n = os.readv(fd, [view])
                except BlockingIOError:
                    break
                if n == 0:
                    break
                self.got += n


def socketpairs(n: int) -> tuple[list[socket.socket], list[socket.socket]]:
    senders, peers = [], []
    for _ in range(n):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BIG_SNDBUF)
        except OSError:
            pass
        senders.append(a)
        peers.append(b)
    return senders, peers


@dataclass
class Fixture:
    """What one case writes to: `targets` is one pass of N ops (batch size N)."""

    targets: list[Any]
    drain: Drain
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for c in self.closers:
            c()


def fixture(case: str, n: int) -> Fixture:
    if case == "write":
        r, w = os.pipe()
        try:
            fcntl.fcntl(w, F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass
        return Fixture([w] * n, Drain([r]), [lambda: os.close(r), lambda: os.close(w)])
    k = {"send": 1, "send-rr": n, "send_many": MANY}[case]
    senders, peers = socketpairs(k)
    targets = senders * n if case == "send" else senders
    closers = [s.close for s in senders + peers]
    return Fixture(targets, Drain([p.fileno() for p in peers]), closers)


# ---------------------------------------------------------------- timed chunks
# Each returns the ns spent in one chunk of calls (CHUNK ops; send_many: one call
# to MANY sockets).  Direct and batched chunks have the same loop shape: a pass
# over `targets` per N ops, the batched one flushing after each pass.


def direct_chunk(case: str, t: list[Any]) -> int:
    data = PAYLOAD
    if case == "send_many":
        t0 = now()
        for s in t:
            s.send(data)
        return now() - t0
    passes = range(CHUNK // len(t))
    if case == "write":
        write = os.write
        t0 = now()
        for _ in passes:
            for fd in t:
                write(fd, data)
        return now() - t0
    t0 = now()
    for _ in passes:
        for s in t:
            s.send(data)
    return now() - t0


def batched_chunk(case: str, t: list[Any], b: pyesca.Batch) -> int:
    data, flush = PAYLOAD, b.flush
    if case == "send_many":
        send_many = b.send_many
        t0 = now()
        send_many(t, data)
        flush()
        return now() - t0
    passes = range(CHUNK // len(t))
    op = b.write if case == "write" else b.send
    t0 = now()
    for _ in passes:
        for x in t:
            op(x, data)
        flush()
    return now() - t0


# ---------------------------------------------------------------- one configuration


@dataclass
class Config:
    """One row: a round alternates direct and batched chunks (A B, B A, ...), so
    both sides see the same host noise; a side's ns/op in a round is the median
    over its chunks, and the round's ratio is batched/direct."""

    case: str
    executor: str
    size: int
    ops: int
    fx: Fixture
    many_drain: int = MANY_DRAIN_EVERY
    direct_ns: list[float] = field(default_factory=list)  # ns/op, one per round
    batched_ns: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    entries_per_op: list[float] = field(default_factory=list)
    errors: int = 0
    short_completed: int = 0

    @property
    def chunk_ops(self) -> int:
        return MANY if self.case == "send_many" else CHUNK

    def round(self, batched_first: bool) -> None:
        case, t, drain = self.case, self.fx.targets, self.fx.drain
        cap = max(1024, MANY + 24, self.size)
        n = self.ops // self.chunk_ops
        every = self.many_drain if case == "send_many" else 1
        d_ns: list[int] = []
        b_ns: list[int] = []
        gc.collect()
        gc.disable()
        try:
            with pyesca.batch(executor=self.executor, capacity=cap) as b:
                # warm the ring and the table (page faults), untimed
                if case == "send_many":
                    b.send_many(t, PAYLOAD)
                else:
                    op = b.write if case == "write" else b.send
                    for x in t:
                        op(x, PAYLOAD)
                b.flush()
                drain()
                s0 = b.stats()
                for i in range(n):
                    if (i + batched_first) % 2:
                        b_ns.append(batched_chunk(case, t, b))
                        d_ns.append(direct_chunk(case, t))
                    else:
                        d_ns.append(direct_chunk(case, t))
                        b_ns.append(batched_chunk(case, t, b))
                    if i % every == every - 1:
                        drain()
                drain()
                s1 = b.stats()
        finally:
            gc.enable()
        k = self.chunk_ops
        d = statistics.median(d_ns) / k
        bt = statistics.median(b_ns) / k
        self.direct_ns.append(d)
        self.batched_ns.append(bt)
        self.ratios.append(bt / d)
        self.entries_per_op.append((s1["kernel_entries"] - s0["kernel_entries"]) / self.ops)
        self.errors += s1["errors"]
        self.short_completed += s1["short_completed"]

    def expected_bytes(self) -> int:
        warm = len(self.fx.targets) * len(self.batched_ns)
        return (2 * self.ops * len(self.batched_ns) + warm) * len(PAYLOAD)

    def row(self) -> dict[str, Any]:
        def summary(xs: list[float]) -> dict[str, float]:
            return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}

        return {
            "op": self.case,
            "executor": self.executor,
            "batch": self.size,
            "ops_per_measurement": self.ops,
            "rounds": len(self.ratios),
            "direct_ns_per_op": summary(self.direct_ns),
            "batched_ns_per_op": summary(self.batched_ns),
            "ratio": summary(self.ratios),
            "kernel_entries_per_op": statistics.median(self.entries_per_op),
            "bytes_expected": self.expected_bytes(),
            "bytes_received": self.fx.drain.got,
            "errors": self.errors,
            "short_completed": self.short_completed,
            "samples": {
                "direct_ns_per_op": self.direct_ns,
                "batched_ns_per_op": self.batched_ns,
                "ratio": self.ratios,
            },
        }


# ---------------------------------------------------------------- output


def rng(s: dict[str, float], fmt: str) -> str:
    return f"{s['median']:{fmt}} [{s['min']:{fmt}}-{s['max']:{fmt}}]"


def table(rows: list[dict[str, Any]]) -> str:
    head = ("op", "executor", "batch", "direct ns/op", "batched ns/op", "ratio",
            "kentries/op")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = (
            r["op"], r["executor"], str(r["batch"]),
            rng(r["direct_ns_per_op"], ".0f"), rng(r["batched_ns_per_op"], ".0f"),
            rng(r["ratio"], ".2f"), f"{r['kernel_entries_per_op']:.3f}",
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- main


# (op, batch size, ratio it should reach under uring) -- the targets
TARGETS = (("send", 64, 0.80), ("send-rr", 64, 0.80), ("send_many", MANY, 0.50))


def target_lines(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for op, size, want in TARGETS:
        for r in rows:
            if (r["op"], r["executor"], r["batch"]) == (op, "uring", size):
                got = r["ratio"]["median"]
                verdict = "met" if got <= want else "MISSED"
                out.append(f"target: {op} uring batch {size}: ratio {got:.2f} "
                           f"(want <= {want:.2f}): {verdict}")
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7, help="interleaved A/B rounds (7)")
    p.add_argument("--ops", type=int, default=32768,
                   help=f"ops per measurement, rounded to {CHUNK} (32768)")
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                   default=list(SIZES), help="batch sizes (1,4,16,64,256)")
    p.add_argument("--executors", default="uring,sequential")
    p.add_argument("--cases", default="send,send-rr,write,send_many")
    p.add_argument("--many-drain", type=int, default=MANY_DRAIN_EVERY, metavar="K",
                   help=f"send_many: drain the peers every K A/B pairs ({MANY_DRAIN_EVERY})")
    p.add_argument("--cpu", type=int, help="pin this process to one CPU")
    p.add_argument("--quick", action="store_true", help="a few-second smoke run")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    a = p.parse_args(argv)
    if a.quick:
        a.rounds, a.ops = min(a.rounds, 3), 2048
    a.ops = max(CHUNK, a.ops // CHUNK * CHUNK)
    if a.many_drain < 1:
        p.error("--many-drain must be >= 1")
    for s in a.sizes:
        if s < 1 or CHUNK % s:
            p.error(f"batch size {s} must divide {CHUNK}")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    if a.cpu is not None:
        os.sched_setaffinity(0, {a.cpu})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * MANY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * MANY), hard))
    have = pyesca.executors()
    execs = []
    for e in a.executors.split(","):
        if e in have:
            execs.append(e)
        else:
            log(f"micro: executor {e!r} unavailable here (have {have}): skipped")
    cases = a.cases.split(",")
    configs: list[Config] = []
    for case in cases:
        sizes = [MANY] if case == "send_many" else a.sizes
        ops = max(8, a.ops // MANY) * MANY if case == "send_many" else a.ops
        for e in execs:
            for n in sizes:
                configs.append(Config(case, e, n, ops, fixture(case, n), a.many_drain))
    log(f"micro: {len(configs)} configurations x {a.rounds} rounds, {a.ops} ops each")
    t0 = time.monotonic()
    try:
        for r in range(a.rounds):
            for c in configs:
                c.round(batched_first=r % 2 == 1)
            log(f"micro: round {r + 1}/{a.rounds} done ({time.monotonic() - t0:.0f} s)")
        rows = [c.row() for c in configs]
    finally:
        for c in configs:
            c.fx.close()
    print(table(rows))
    for line in target_lines(rows):
        print(line)
    bad = [r for r in rows if r["bytes_received"] != r["bytes_expected"] or r["errors"]]
    for r in bad:
        log(f"micro: {r['op']}/{r['executor']}/{r['batch']}: received {r['bytes_received']}"
            f" of {r['bytes_expected']} bytes, {r['errors']} errors")
    if a.json:
        out = {
            "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "payload_bytes": len(PAYLOAD),
            "rounds": a.rounds,
            "seconds": round(time.monotonic() - t0, 1),
            "rows": rows,
        }
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
        log(f"micro: wrote {a.json}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
