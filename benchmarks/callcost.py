#!/usr/bin/env python3
"""What libesca.so adds to each call, in instructions: a measure this
machine's timing noise does not move.

benchmarks/callcost.c runs rounds of 16 sends of 64 B (one to each of 16
unix socketpairs), one wait (epoll_wait or poll) and 16 reads: 33 calls a
round.  This counts the user-space instructions of a run under valgrind's
callgrind, plainly and under libesca.so in each mode of lever adapt, at two
round counts, so that start-up cancels out:

    per round = (I(rounds_hi) - I(rounds_lo)) / (rounds_hi - rounds_lo)

and prints per mode the instructions a round, the instructions the library
adds per call (per round minus plain's, over 33), and the kernel entries a
round (strace -f -c, by the same difference: 33 plainly).  Modes:

    plain     no pyesca
    ring      every send deferred, flushes through io_uring (ESCA_ADAPT=0)
    flat      every send deferred, flushes as plain syscalls (lever plain,
              forced: ESCA_ADAPT_TEST=plain)
    aside     stepped aside (forced: ESCA_ADAPT_TEST=aside): each call to the
              kernel, through the interposers' checks

The time bound is set to 1 s (ESCA_FLUSH_US): its timer's shots follow wall
time, and valgrind runs ~50x slower.  Only user-space instructions are
counted: the kernel's side (a syscall's
entry, io_uring's work per request) is not, so `ring` looks cheaper than it
runs; what it shows is the library's own work, the part a change to
native/ moves.  A kernel entry costs ~100-300 ns depending on the machine
(esca bench prints it): the instructions added per call should stay well
under what an entry costs for deferral to pay where entries are cheap.

    .venv/bin/python benchmarks/callcost.py            # ~30 s
    .venv/bin/python benchmarks/callcost.py --quick    # ~6 s
    .venv/bin/python benchmarks/callcost.py --json out.json

Exit status 0; 1 when a run failed (the driver checks every call's result);
2 when valgrind, strace or a C compiler is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyesca

HERE = Path(__file__).resolve().parent
LIB = Path(pyesca.__file__).parent / "libesca.so"
CALLS_PER_ROUND = 33  # 16 sends, one wait, 16 reads (callcost.c)
MODES: dict[str, dict[str, str] | None] = {
    "plain": None,
    "ring": {"ESCA_ADAPT": "0"},
    # forced at every window's end: 4096 waits + events, ~120 rounds (the
    # reads count as waits), so that the first ends before the runs differ
    # and the windows' own cost (a clock read each) stays out of the count
    "flat": {"ESCA_ADAPT_TEST": "plain", "ESCA_ADAPT_WINDOW": "4096"},
    "aside": {"ESCA_ADAPT_TEST": "aside", "ESCA_ADAPT_WINDOW": "4096"},
}


class Failed(Exception):
    pass


def build(tmp: Path) -> Path:
    cc = os.environ.get("CC", "cc")
    exe = tmp / "callcost"
    p = subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(exe),
                        str(HERE / "callcost.c")], capture_output=True, text=True)
    if p.returncode:
        raise Failed(f"{cc} failed: {p.stderr.strip()}")
    return exe


def env_for(mode: str, stats: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCA_")}
    env.pop("LD_PRELOAD", None)
    extra = MODES[mode]
    if extra is not None:
        # the time bound at 1 s: its timer's shot comes every 2 ms of wall
        # time, which under valgrind is every few rounds (a signal and a
        # restarted read each: a count that would follow the machine's speed)
        env.update(LD_PRELOAD=str(LIB), ESCA_EXECUTOR="uring", ESCA_FLUSH_US="1000000", **extra)
        if stats:
            env["ESCA_STATS"] = str(stats)
    return env


def instructions(exe: Path, mode: str, rounds: int, wait: str, tmp: Path) -> int:
    out = tmp / f"cg-{mode}-{wait}-{rounds}.out"
    p = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
         str(exe), str(rounds), wait],
        env=env_for(mode, None), capture_output=True, text=True, timeout=600)
    if p.returncode:
        raise Failed(f"{mode} {wait} {rounds} rounds under valgrind: exit {p.returncode}: "
                     f"{p.stderr.strip()[-400:]}")
    m = re.search(r"^totals:\s*(\d+)", out.read_text(), re.M)
    if not m:
        raise Failed(f"{out}: no totals line")
    return int(m.group(1))


def syscalls(exe: Path, mode: str, rounds: int, wait: str, tmp: Path) -> int:
    """Every system call of a run, the library's threads' too (strace -f -c)."""
    out = tmp / f"strace-{mode}-{wait}-{rounds}.txt"
    p = subprocess.run(["strace", "-f", "-c", "-o", str(out), str(exe), str(rounds), wait],
                       env=env_for(mode, None), capture_output=True, text=True, timeout=300)
    if p.returncode:
        raise Failed(f"{mode} {wait} {rounds} rounds under strace: exit {p.returncode}: "
                     f"{p.stderr.strip()[-400:]}")
    for line in out.read_text().splitlines():
        f = line.split()
        if f and f[-1] == "total":  # % time, seconds, usecs/call, calls, [errors], total
            return int(f[3])
    raise Failed(f"{out}: no total line")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds (~6 s a wait)")
    ap.add_argument("--wait", choices=["epoll", "poll", "both"], default="both",
                    help="the wait of each round (default both)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)
    for tool in ("valgrind", "strace"):
        if not shutil.which(tool):
            print(f"callcost: {tool} not found (apt-get install {tool})", file=sys.stderr)
            return 2
    lo, hi = (150, 400) if args.quick else (1000, 5000)
    waits = ["epoll", "poll"] if args.wait == "both" else [args.wait]
    rows = []
    with tempfile.TemporaryDirectory(prefix="callcost-") as d:
        tmp = Path(d)
        try:
            exe = build(tmp)
        except (Failed, FileNotFoundError) as e:
            print(f"callcost: {e}", file=sys.stderr)
            return 2
        try:
            for wait in waits:
                base = None
                for mode in MODES:
                    a = instructions(exe, mode, lo, wait, tmp)
                    b = instructions(exe, mode, hi, wait, tmp)
                    per_round = (b - a) / (hi - lo)
                    if base is None:
                        base = per_round
                    rows.append({
                        "wait": wait, "mode": mode,
                        "instructions_per_round": round(per_round, 1),
                        "added_per_call": round((per_round - base) / CALLS_PER_ROUND, 1),
                        "entries_per_round": round(
                            (syscalls(exe, mode, hi, wait, tmp)
                             - syscalls(exe, mode, lo, wait, tmp)) / (hi - lo), 2),
                    })
                    print(f"callcost: {wait} {mode} done", file=sys.stderr, flush=True)
        except Failed as e:
            print(f"callcost: {e}", file=sys.stderr)
            return 1
    print(f"callcost: {CALLS_PER_ROUND} calls a round (16 sends of 64 B, a wait, 16 reads), "
          f"rounds {lo} and {hi}; user-space instructions (valgrind callgrind); pyesca "
          f"{LIB}")
    print(f"{'wait':6} {'mode':6} {'instr/round':>12} {'added/call':>11} {'entries/round':>14}")
    for r in rows:
        print(f"{r['wait']:6} {r['mode']:6} {r['instructions_per_round']:12,.0f} "
              f"{r['added_per_call']:11,.1f} {r['entries_per_round']:14.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"rounds": [lo, hi], "calls_per_round": CALLS_PER_ROUND, "rows": rows},
            indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
