#!/usr/bin/env python3
"""The README's summary table, from saved `esca bench --json` files.

One row per configuration, file size and mode (vanilla excluded: it is the
base of every ratio), from a pinned run (server CPU per request, kernel
entries) and an unpinned one (requests/s) of the same configuration:

  req/s unpinned   median of the per-round ratios to vanilla, [min-max]
  CPU/req pinned   median of the per-round ratios of server CPU per request
                   (user + system, all server processes) to vanilla's
  entries/req      kernel entries per request (pinned run), and its ratio
  quiet            the same two ratios over the quiet rounds only (neither
                   run of the round had other load or steal time over 0.10
                   CPU: esca bench's other_cpu and steal_cpu), "k/n" rounds;
                   "all" or "none" when every round or no round was quiet
  ceiling          vanilla's entries x the kernel-entry cost as a share of
                   its CPU per request: at most what removing entries saves
  errors           wrk socket errors + non-2xx over every run of the mode
  bound            the issue's "never a net loss" bound: req/s >= 0.98x and
                   CPU/req <= 1.02x (yes / NO), never hidden

A configuration that has only one of the two runs gets "-" in the other's
columns.  Every mode and configuration in the files is printed: nothing that
loses is dropped; files of several commits give a row per commit (a
`commit` column says which).  Under the table: each file's command, commit, machine
and load.

    .venv/bin/python benchmarks/summary.py benchmarks/results/*-pinned.json \
        benchmarks/results/*-unpinned.json > table.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

Key = tuple[str, int, int, str]  # config, size, connections, commit


def cpu(run: dict[str, Any]) -> float | None:
    u, s = run.get("server_user_us_per_request"), run.get("server_sys_us_per_request")
    return None if u is None or s is None else float(u) + float(s)


QUIET_CPU = 0.10  # as esca bench's report.QUIET_CPU


def quiet(run: dict[str, Any]) -> bool:
    """Nothing but the server and wrk used the CPUs in this run (files before
    steal_cpu counted steal inside other_cpu)."""
    return all((run.get(k) or 0.0) <= QUIET_CPU for k in ("other_cpu", "steal_cpu"))


def per_round_ratio(case: dict[str, Any], mode: str, get: Any,
                    only_quiet: bool = False) -> list[float]:
    """The ratios mode/vanilla of get(run), round by round (only_quiet: of
    the rounds where neither run was disturbed)."""
    base = {r["round"]: r for r in case["modes"]["vanilla"]["runs"]}
    out = []
    for r in case["modes"][mode]["runs"]:
        br = base.get(r["round"])
        if br is None or (only_quiet and not (quiet(r) and quiet(br))):
            continue
        a, b = get(r), get(br)
        if a is not None and b:
            out.append(a / b)
    return out


def fmt_quiet(xs: list[float], n: int) -> str:
    """A ratio over the quiet rounds: "all" when every round was quiet (the
    ratio is the column's), "none" when none was, "-" without the run."""
    if not n:
        return "-"
    if not xs:
        return "none"
    if len(xs) == n:
        return "all"
    return f"{statistics.median(xs):.2f}x ({len(xs)}/{n})"


def fmt_ratio(xs: list[float]) -> str:
    if not xs:
        return "-"
    med = statistics.median(xs)
    if len(xs) == 1:
        return f"{med:.2f}x"
    return f"{med:.2f}x [{min(xs):.2f}-{max(xs):.2f}]"


# What the measured library is built from: files of commits that differ
# only outside these measured the same library (--same-library).
LIBRARY_PATHS = ("native", "src/pyesca/_core.c", "setup.py")


def library_commit(commits: set[str]) -> str:
    """One name for commits whose library sources are the same ("a=b=c"), or
    exit 2 saying which differ.  A "-dirty" commit (uncommitted changes at
    the run) is checked as its commit: esca bench keeps no diff, so what was
    uncommitted cannot be checked afterwards, and the name keeps "-dirty"."""
    repo = Path(__file__).resolve().parent.parent
    plain = sorted({c.removesuffix("-dirty") for c in commits})

    def git(*args: str) -> int:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True,
                              check=False).returncode

    for c in plain[1:]:
        if git("diff", "--quiet", plain[0], c, "--", *LIBRARY_PATHS) != 0:
            print(f"summary.py: --same-library: {plain[0]} and {c} differ in"
                  f" {', '.join(LIBRARY_PATHS)} (or git cannot tell)", file=sys.stderr)
            sys.exit(2)
    return "=".join(sorted(commits))


def load(paths: list[Path], same_library: bool = False
         ) -> tuple[dict[Key, dict[str, Any]], dict[Key, dict[str, Any]], list[dict[str, Any]]]:
    pinned: dict[Key, dict[str, Any]] = {}
    unpinned: dict[Key, dict[str, Any]] = {}
    docs = []
    for p in paths:
        doc = json.loads(p.read_text())
        if doc.get("schema") != 2:
            sys.exit(f"summary.py: {p}: not an esca bench --json file of schema 2")
        doc["_path"] = str(p)
        docs.append(doc)
    one = (library_commit({str(d["machine"].get("commit", "?")) for d in docs})
           if same_library else None)
    for doc in docs:
        is_pinned = bool(doc["pinning"].get("server_cpus"))
        for case in doc["cases"]:
            if "vanilla" not in case["modes"]:
                continue
            commit = one or str(doc["machine"].get("commit", "?"))
            key = (doc["config"]["config"], case["size"], case["connections"], commit)
            (pinned if is_pinned else unpinned)[key] = case
    return pinned, unpinned, docs


def without_pyesca(mode: str) -> bool:
    """vanilla-again: the server without pyesca, a second time in the rounds."""
    return mode.startswith("vanilla")


def table(paths: list[Path], same_library: bool = False) -> str:
    pinned, unpinned, docs = load(paths, same_library)
    # files of several commits: a row per commit, which a column names
    many = len({k[3] for k in (*pinned, *unpinned)}) > 1
    rows = [
        "| config | size | mode | req/s unpinned | CPU/req pinned | quiet: req/s, CPU/req | "
        "entries/req (vanilla's) | "
        "ceiling | deferred/req | errors | " + ("commit | " if many else "") + "bound |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
        + ("--- | " if many else "") + "--- |",
    ]
    for key in sorted(set(pinned) | set(unpinned), key=lambda k: (k[0], -k[1], k[2], k[3])):
        p, u = pinned.get(key), unpinned.get(key)
        modes = [m for m in (p or u or {})["modes"] if m != "vanilla"]
        for mode in modes:
            rq = (per_round_ratio(u, mode, lambda r: r["requests_per_sec"])
                  if u and mode in u["modes"] else [])
            cp = per_round_ratio(p, mode, cpu) if p and mode in p["modes"] else []
            rq_q = (per_round_ratio(u, mode, lambda r: r["requests_per_sec"], True)
                    if u and mode in u["modes"] else [])
            cp_q = per_round_ratio(p, mode, cpu, True) if p and mode in p["modes"] else []
            qs = f"{fmt_quiet(rq_q, len(rq))}, {fmt_quiet(cp_q, len(cp))}"
            ent = van = ceiling = dfr = "-"
            errors = 0
            if p and mode in p["modes"]:
                m, v = p["modes"][mode], p["modes"]["vanilla"]
                e, ve = m["kernel_entries_per_request"], v["kernel_entries_per_request"]
                if e and ve:
                    ent, van = f"{e['median']:.2f}", f"{ve['median']:.2f}"
                    ent = f"{ent} ({van}): {e['median'] / ve['median']:.2f}x"
                share = v.get("entries_cpu_share_of_baseline")
                ceiling = f"{share * 100:.0f}%" if share is not None else "-"
                d = m.get("deferred_per_request") or {}
                dfr = f"{d['median']:.2f}" if d.get("median") is not None else "-"
                errors += int(m.get("errors") or 0)
            if u and mode in u["modes"]:
                errors += int(u["modes"][mode].get("errors") or 0)
            ok = (not rq or statistics.median(rq) >= 0.98) and (
                not cp or statistics.median(cp) <= 1.02) and not errors
            size = f"{key[1]:,} B"
            # the server without pyesca again: its ratios are the run's noise
            bound = "noise floor" if without_pyesca(mode) else "yes" if ok else "NO"
            rows.append(
                f"| {key[0]} | {size} | {mode} | {fmt_ratio(rq)} | {fmt_ratio(cp)} | {qs}"
                f" | {ent} | "
                f"{ceiling} | {dfr} | {errors} | " + (f"{key[3]} | " if many else "")
                + f"{bound} |"
            )
    notes = ["", "Measured by:"]
    for doc in docs:
        mach = doc["machine"]
        ke = mach.get("kernel_entry") or {}
        notes.append(
            f"- `{doc['command']}` at pyesca {mach.get('commit', '?')}: {mach.get('cpu_model')},"
            f" {mach.get('cpus')} vCPUs, Linux {mach.get('kernel')}, a kernel entry"
            f" {ke.get('ns', '?')} ns,"
            f" load {mach.get('loadavg_start')} -> {mach.get('loadavg_end')}"
            f"; {doc['pinning']['note']} (`{Path(doc['_path']).name}`)"
        )
    return "\n".join(rows + notes) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", nargs="+", type=Path, help="esca bench --json files")
    ap.add_argument("--same-library", action="store_true",
                    help="the files' commits differ only outside the library's sources"
                    f" ({', '.join(LIBRARY_PATHS)}; checked with git): one row per"
                    " configuration, not one per commit")
    args = ap.parse_args(argv)
    for p in args.json:
        if not p.is_file():
            print(f"summary.py: {p}: no such file", file=sys.stderr)
            return 2
    sys.stdout.write(table(args.json, args.same_library))
    return 0


if __name__ == "__main__":
    sys.exit(main())
