#!/usr/bin/env python3
"""What libesca.so adds to a real server's requests, in instructions.

A server of `esca bench --config NAME` (default nginx-accesslog: nginx with
its default access log; nginx runs as one process, `master_process off`)
runs under valgrind's callgrind, plainly and under libesca.so in each mode
of lever adapt; wrk (-t1 -c10) loads it for a warm-up, then callgrind's
counters are zeroed, wrk runs SECONDS more, and they are dumped.  The
requests of that run are the ones wrk counted, so

    instructions per request = Ir between zero and dump / requests

of the server's process, user space only (the kernel's side of a call is
not counted: see benchmarks/callcost.py).  Per mode it prints the
instructions a request, what the library added to plain's, and the part
spent in libesca.so's own functions (inlined helpers count in their
caller), with the functions that took most.  Modes, as in callcost.py:

    plain     no pyesca
    aside     stepped aside (ESCA_ADAPT_TEST=aside): what nginx costs under
              `esca run` where adapt finds deferring does not pay - every
              `esca bench --config nginx*` run on the Intel and AMD VMs
    ring      every deferrable call deferred, flushed through io_uring
              (ESCA_ADAPT=0)
    flat      deferred, flushed as plain system calls (ESCA_ADAPT_TEST=plain)

Under valgrind a request takes ~50x its time, so what adapt itself would
choose is not measured here (its windows measure CPU time), and the time
bound is 1 s (ESCA_FLUSH_US) as in callcost.py.  Counts are repeatable to
about 1% (wrk's request mix over ten connections is not the same twice).

    .venv/bin/python benchmarks/servercost.py                 # ~1 min
    .venv/bin/python benchmarks/servercost.py --modes plain,aside --seconds 2
    .venv/bin/python benchmarks/servercost.py --config lighttpd
    .venv/bin/python benchmarks/servercost.py --json out.json

Exit status 0; 1 when a run failed; 2 when valgrind, the server or wrk is
missing, or an argument is wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pyesca
from pyesca.bench.servers import CONFIGS, file_bytes, free_port, make_docroot

LIB = Path(pyesca.__file__).parent / "libesca.so"
FILE = "a20.html"
# the configurations whose server is one process under valgrind
SERVERS = ("nginx-accesslog", "nginx", "lighttpd", "lighttpd-accesslog")
MODES: dict[str, dict[str, str] | None] = {
    "plain": None,
    "aside": {"ESCA_ADAPT_TEST": "aside"},
    "ring": {"ESCA_ADAPT": "0"},
    "flat": {"ESCA_ADAPT_TEST": "plain"},
}


class Failed(Exception):
    pass


def env_for(mode: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCA_")}
    env.pop("LD_PRELOAD", None)
    extra = MODES[mode]
    if extra is not None:
        env.update(LD_PRELOAD=str(LIB), ESCA_EXECUTOR="uring", ESCA_FLUSH_US="1000000",
                   ESCA_QUIET="1", **extra)
    return env


def wrk(url: str, seconds: int) -> int:
    """wrk's requests (its own count), after checking it saw no error."""
    p = subprocess.run(["wrk", "-t1", "-c10", f"-d{seconds}s", url],
                       capture_output=True, text=True, timeout=seconds + 60)
    m = re.search(r"^\s*(\d+) requests in", p.stdout, re.M)
    if p.returncode or "Socket errors" in p.stdout or "Non-2xx" in p.stdout or not m:
        raise Failed(f"wrk against {url}: exit {p.returncode}: {p.stdout.strip()[-300:]}")
    return int(m.group(1))


def profile(config: str, mode: str, seconds: int, tmp: Path, want: bytes) -> dict[str, object]:
    work = tmp / mode
    work.mkdir()
    root = make_docroot(work / "www", {FILE: 20480})
    port = free_port()
    argv = CONFIGS[config].make(root.path, port, work)
    conf = work / "nginx.conf"
    if conf.exists():  # one process: no master to fork the worker
        conf.write_text(conf.read_text().replace("master_process on;", "master_process off;"))
    out = work / "callgrind.out"
    url = f"http://127.0.0.1:{port}/{FILE}"
    p = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p", *argv],
        env=env_for(mode), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.read() != want:
                        raise Failed(f"{mode}: GET {url}: not the file's bytes")
                break
            except OSError:
                if p.poll() is not None or time.monotonic() > deadline:
                    raise Failed(f"{mode}: {config} under valgrind did not answer: "
                                 f"{(p.communicate()[1] or '')[-400:]}") from None
                time.sleep(0.3)
        wrk(url, 1)
        subprocess.run(["callgrind_control", "-z", str(p.pid)], check=True,
                       capture_output=True, timeout=60)
        requests = wrk(url, seconds)
        subprocess.run(["callgrind_control", "-d", str(p.pid)], check=True,
                       capture_output=True, timeout=60)
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
        try:
            # under valgrind a SIGTERM can wait for good behind a folded
            # epoll wait (valgrind keeps signals blocked across io_uring_enter;
            # plainly nginx exits in ~5 ms): the dump is taken, so kill
            p.communicate(timeout=3)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.communicate()
    dump = Path(f"{out}.{p.pid}.1")
    if not dump.exists():
        raise Failed(f"{mode}: no callgrind dump {dump}")
    if requests <= 0:
        raise Failed(f"{mode}: no request during the measured run")
    total, lib = functions(dump)
    return {
        "mode": mode,
        "requests": requests,
        "instructions_per_request": round(total / requests, 1),
        "library_per_request": round(sum(lib.values()) / requests, 1),
        "library_functions": {k: round(v / requests, 1) for k, v in
                              sorted(lib.items(), key=lambda kv: -kv[1])[:12]},
    }


def functions(dump: Path) -> tuple[int, dict[str, int]]:
    """The dump's total Ir and the self cost of each libesca.so function."""
    p = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", str(dump)],
                       capture_output=True, text=True, timeout=120)
    if p.returncode:
        raise Failed(f"callgrind_annotate {dump}: {p.stderr.strip()[-300:]}")
    total = 0
    lib: dict[str, int] = {}
    for line in p.stdout.splitlines():
        m = re.match(r"\s*([\d,]+) \([\s\d.]+%\)\s+(\S.*)$", line)
        if not m:
            continue
        n = int(m.group(1).replace(",", ""))
        what = m.group(2)
        if what.startswith("PROGRAM TOTALS"):
            total = n
        elif what.endswith("libesca.so]"):
            # "path/file.c:function [object]"
            name = what.rsplit(" [", 1)[0]
            lib[name.rsplit("/", 1)[-1]] = lib.get(name.rsplit("/", 1)[-1], 0) + n
    if not total:
        raise Failed(f"{dump}: no PROGRAM TOTALS")
    # the frames live when the counters were zeroed (the program's main under
    # the library's main_wrapper) show their inclusive cost: not the library's
    return total, {k: v for k, v in lib.items() if v < total // 2}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="nginx-accesslog", choices=SERVERS,
                    help="the server configuration (esca bench's; default nginx-accesslog)")
    ap.add_argument("--modes", default=",".join(MODES),
                    help=f"comma-separated, from {', '.join(MODES)} (default all)")
    ap.add_argument("--seconds", type=int, default=4,
                    help="the measured wrk run under valgrind (default 4)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--keep", metavar="DIR",
                    help="keep each mode's callgrind dump in DIR/MODE/ (for callgrind_annotate)")
    args = ap.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        print(f"servercost: unknown mode {', '.join(bad) or '(none)'} "
              f"(modes: {', '.join(MODES)})", file=sys.stderr)
        return 2
    if not 1 <= args.seconds <= 600:
        print("servercost: --seconds must be 1-600", file=sys.stderr)
        return 2
    server = CONFIGS[args.config].kind
    for tool, pkg in (("valgrind", "valgrind"), ("callgrind_control", "valgrind"),
                      (server, server), ("wrk", "wrk")):
        if not shutil.which(tool):
            print(f"servercost: {tool} not found (apt-get install {pkg})", file=sys.stderr)
            return 2
    rows = []
    if args.keep:
        keep = Path(args.keep)
        try:
            keep.mkdir(parents=True, exist_ok=True)
            stale = [m for m in modes if (keep / m).exists()]
        except OSError as e:
            print(f"servercost: --keep {keep}: {e.strerror}", file=sys.stderr)
            return 2
        if stale:
            print(f"servercost: --keep {keep}: {', '.join(stale)} already there", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="servercost-") as d:
        tmp = Path(args.keep) if args.keep else Path(d)
        want = file_bytes(FILE, 20480)
        try:
            for mode in modes:
                rows.append(profile(args.config, mode, args.seconds, tmp, want))
                print(f"servercost: {mode} done ({rows[-1]['requests']} requests)",
                      file=sys.stderr, flush=True)
        except (Failed, subprocess.SubprocessError) as e:
            print(f"servercost: {e}", file=sys.stderr)
            return 1
    base = next((r["instructions_per_request"] for r in rows if r["mode"] == "plain"), None)
    print(f"servercost: {args.config} (one process), GET /{FILE} 20,480 B, "
          f"wrk -t1 -c10, {args.seconds:g} s under valgrind callgrind; user-space "
          f"instructions of the server's process; pyesca {LIB}")
    print(f"{'mode':6} {'requests':>9} {'instr/request':>14} {'added':>8} {'in libesca':>11}")
    for r in rows:
        added = "-" if base is None else f"{r['instructions_per_request'] - base:,.0f}"
        print(f"{r['mode']:6} {r['requests']:9,} {r['instructions_per_request']:14,.0f} "
              f"{added:>8} {r['library_per_request']:11,.0f}")
    for r in rows:
        if r["library_functions"]:
            top = ", ".join(f"{k} {v:,.0f}" for k, v in list(r["library_functions"].items())[:8])
            print(f"  {r['mode']}: {top}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"config": args.config, "file": FILE, "seconds": args.seconds, "rows": rows},
            indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
