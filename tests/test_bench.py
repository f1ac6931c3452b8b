"""`esca bench`: the report's shape and that no errors occurred, never the speed.

The `--quick` run and one short run per `--config` (1 round, 1 s, vanilla and
esca, about 8 s each) start real servers and wrk.  The rest checks parsing,
formatting and the measured kernel-entry cost without servers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from pyesca.bench import perf, report
from pyesca.bench.runner import (
    BenchConfig,
    BenchError,
    CpuSnapshot,
    Pinning,
    RunRecord,
    other_cpu,
    steal_cpu,
)
from pyesca.bench.runner import BenchResult as Result
from pyesca.bench.servers import CONFIGS, file_name, start_on_free_port
from pyesca.bench.wrk import WrkError, parse_bytes, parse_time_us, parse_wrk, wrk_argv
from pyesca.cli import main
from pyesca.run import library_path

SEED_ESCA = """\
Running 5s test @ http://localhost:3000/a20.html
  4 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   306.03us  102.79us   1.17ms   72.10%
    Req/Sec    28.13k     5.24k   39.73k    60.78%
  570920 requests in 5.10s, 11.23GB read
  Socket errors: connect 0, read 8176, write 0, timeout 0
Requests/sec: 111941.37
Transfer/sec:      2.20GB
"""


def esca() -> list[str]:
    exe = Path(sys.executable).parent / "esca"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "pyesca.cli"]


def skip_reason(server: str) -> str | None:
    for tool in (server, "wrk"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (tools/deps.sh)"
    if not library_path().is_file():
        return "libesca.so not built: run 'make build'"
    return None


# ---------------------------------------------------------------- no servers


def test_parse_wrk_seed_output() -> None:
    r = parse_wrk(SEED_ESCA)
    assert r.requests == 570920
    assert r.seconds == pytest.approx(5.10)
    assert r.requests_per_sec == pytest.approx(111941.37)
    assert r.transfer_per_sec == pytest.approx(2.20 * 2**30)
    assert r.bytes_read == pytest.approx(11.23 * 2**30)
    assert r.socket_errors == {"connect": 0, "read": 8176, "write": 0, "timeout": 0}
    assert (r.socket_error_total, r.non_2xx, r.errors) == (8176, 0, 8176)
    assert r.latency is not None
    assert (r.latency.avg_us, r.latency.stdev_us, r.latency.max_us) == pytest.approx(
        (306.03, 102.79, 1170.0)
    )
    assert r.latency.within_stdev_pct == pytest.approx(72.10)
    with pytest.raises(WrkError):
        parse_wrk("wrk: connection refused\n")


def test_units() -> None:
    assert parse_bytes("1.80GB") == pytest.approx(1.80 * 2**30)
    assert parse_bytes("604.05MB") == pytest.approx(604.05 * 2**20)
    assert parse_bytes("512.00B") == 512
    assert parse_time_us("5.00ms") == 5000
    assert parse_time_us("1.20s") == 1.2e6
    assert report.fmt_bytes(1.80 * 2**30) == "1.80GB"
    assert report.fmt_time(519.95) == "519.95us"
    assert report.fmt_time(24370) == "24.37ms"


def test_wrk_argv_loopback_only() -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk not installed")
    argv = wrk_argv("http://127.0.0.1:1/a20.html", threads=4, connections=2, seconds=1, cpus=[1])
    assert argv[:3] == ["taskset", "-c", "1"] and "-t2" in argv and "-c2" in argv
    with pytest.raises(WrkError, match="non-loopback"):
        wrk_argv("http://example.com/", threads=1, connections=1, seconds=1)


def test_perf_parse_count() -> None:
    text = "# started on ...\n\n2027802,,raw_syscalls:sys_enter,4964503344,100.00,,\n"
    assert perf.parse_count(text) == (2027802, "")
    count, why = perf.parse_count("<not supported>,,raw_syscalls:sys_enter,0,100.00,,\n")
    assert count is None and "not supported" in why
    assert perf.parse_count("")[0] is None


def test_file_names() -> None:
    assert file_name(20480) == "a20.html"  # the seed's file
    assert file_name(100) == "a100.html" and file_name(1 << 20) == "m1.bin"
    assert file_name(4096) == "f4096.html"


def test_config_bounds() -> None:
    BenchConfig().check()
    for bad in (
        BenchConfig(modes=("vanilla", "nope")),
        BenchConfig(modes=("esca", "esca")),
        BenchConfig(rounds=0),
        BenchConfig(duration=100000),
        BenchConfig(connections=(0,)),
        BenchConfig(config="apache"),
    ):
        with pytest.raises(BenchError):
            bad.check()


def test_ablation_modes() -> None:
    """Each lever has a mode without it, and the modes pass esca run's flags."""
    from pyesca.bench.runner import ABLATION_MODES, MODES
    from pyesca.run import LEVERS, parse_levers

    assert ABLATION_MODES[0] == "vanilla" and ABLATION_MODES[-1] == "esca"
    for lever in LEVERS:
        m = MODES[f"esca-no-{lever}"]
        assert m.esca_args is not None
        flags = dict(zip(m.esca_args[::2], m.esca_args[1::2], strict=True))
        assert lever not in parse_levers(flags["--levers"]).split(",")
    assert MODES["esca-base"].esca_args == ("--levers", "none")
    # a lever off by default is measured by adding it to esca
    assert MODES["esca-prefetch"].esca_args == ("--levers", "all,prefetch")
    assert "esca-prefetch" in ABLATION_MODES
    assert "--levers" in (MODES["seed"].esca_args or ())


def test_cli_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--modes", "vanilla,turbo"]) == 2
    assert "unknown mode 'turbo'" in capsys.readouterr().err
    assert main(["bench", "--duration", "0.5"]) == 2
    assert main(["bench", "--connections", "a,b"]) == 2
    for spec, why in [
        ("aside", "NAME:VAR=V"),
        ("Aside:ESCA_X=1", "NAME:VAR=V"),
        ("esca:ESCA_X=1", "a mode already"),
        ("x:PATH=/bin", "not ESCA_NAME=VALUE"),
        ("x:ESCA_X", "not ESCA_NAME=VALUE"),
        ("x:", "no variable"),
    ]:
        assert main(["bench", "--env-mode", spec]) == 2, spec
        assert why in capsys.readouterr().err, spec


def test_env_mode_runs_interleaved(tmp_path: Path) -> None:
    """--env-mode: one more esca mode with its ESCA_* variables, in the same
    rounds: here lever adapt forced aside, which the stats show (every
    window aside, almost nothing deferred) against esca's; and mode
    vanilla-again, the server without pyesca a second time (the noise
    floor)."""
    why = skip_reason("lighttpd")
    if why:
        pytest.skip(why)
    out = tmp_path / "out.json"
    argv = [
        "bench", "--modes", "vanilla,esca,vanilla-again",
        "--env-mode", "aside:ESCA_ADAPT_TEST=aside",
        "--rounds", "1", "--duration", "1", "--warmup", "0", "--perf-seconds", "0",
        "--json", str(out),
    ]  # fmt: skip
    p = subprocess.run([*esca(), *argv], capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    modes = json.loads(out.read_text())["cases"][0]["modes"]
    assert list(modes) == ["vanilla", "esca", "vanilla-again", "aside"]
    # the second vanilla runs no pyesca (no stats) and has its own ratio
    again = modes["vanilla-again"]
    assert again["runs"][0]["stats"] is None and again["errors"] == 0
    assert again["ratio"] > 0 and again["ratio_rounds"][0] == again["ratio"]
    assert modes["aside"]["about"] == "esca with ESCA_ADAPT_TEST=aside"
    st = modes["aside"]["runs"][0]["stats"]
    # (the first window, before the first wait, is the kept mode's)
    assert st["adapt_windows"] > 1 and st["adapt_windows_aside"] >= st["adapt_windows"] - 1, st
    assert modes["aside"]["errors"] == 0 and modes["esca"]["errors"] == 0
    dpr = {m: modes[m]["runs"][0]["deferred_per_request"] for m in ("aside", "esca")}
    assert dpr["aside"] < dpr["esca"] / 2, dpr


def _record(mode: str, rnd: int, output: str, stats: dict[str, Any] | None) -> RunRecord:
    rec = RunRecord(mode, rnd, 50, 20480, measured=parse_wrk(output))
    rec.count_run = parse_wrk(output.replace("read 8176", "read 0"))
    rec.kernel_entries = 3 * rec.count_run.requests
    rec.stats = stats
    rec.requests_total = rec.measured.requests if rec.measured else 0
    return rec


def test_report_flags_errors_and_ratios() -> None:
    clean = SEED_ESCA.replace("  Socket errors: connect 0, read 8176, write 0, timeout 0\n", "")
    slow = clean.replace("111941.37", "91743.33")
    stats = {"deferred": 570920 * 4, "mean_batch_size": 8.0, "executor": "uring"}
    recs = [
        _record("vanilla", 1, slow, None),
        _record("esca", 1, SEED_ESCA, stats),  # the seed's run: read errors
        _record("seed", 1, clean, dict(stats)),
    ]
    res = Result(
        BenchConfig(modes=("vanilla", "esca", "seed"), rounds=1), Pinning(note="n"), {}, recs
    )
    (case,) = report.summarise(res)
    modes = {m.mode: m for m in case.modes}
    assert modes["vanilla"].ratio == 1.0 and not modes["vanilla"].flagged
    assert modes["esca"].ratio == pytest.approx(111941.37 / 91743.33)
    assert modes["esca"].flagged and "read 8176" in modes["esca"].flags[0]
    assert not modes["seed"].flagged
    assert modes["seed"].deferred_per_request is not None
    assert modes["seed"].deferred_per_request.median == pytest.approx(4.0)
    assert "other processes" not in report.format_text(res)
    recs[0].other_cpu = 0.5  # vanilla's measured run shared the CPUs with others
    text = report.format_text(res)
    assert "warning: other processes used CPU during measured runs" in text
    assert "vanilla round 1: 0.50" in text
    assert "steal time" not in text
    recs[1].steal_cpu = 0.4  # the host withheld the vCPUs during esca's run
    text = report.format_text(res)
    assert "warning: the hypervisor withheld CPU (steal time)" in text
    assert "esca round 1: 0.40" in text and "vanilla round 1: 0.50" in text
    assert "hypervisor withheld" in report.to_json(res)["cases"][0]["warning"]
    assert "1.22!" in text and "! esca: round 1: measured run: read 8176" in text
    md = report.format_markdown(res)
    assert "| esca |" in md and "1.22!" in md
    js = report.to_json(res)
    json.dumps(js)
    esca_js = js["cases"][0]["modes"]["esca"]
    assert esca_js["errors"] == 8176 and esca_js["flagged"]
    assert esca_js["kernel_entries_per_request"]["median"] == pytest.approx(3.0)


def test_quiet_rounds_ratio() -> None:
    """The ratios over the rounds where neither run was disturbed (steal or
    other load), beside the median over all: a disturbed round is left out
    of that view, whichever mode it disturbed."""
    clean = SEED_ESCA.replace("  Socket errors: connect 0, read 8176, write 0, timeout 0\n", "")
    slow = clean.replace("111941.37", "55970.69")  # half the requests/s
    recs = []
    for rnd, (base_out, esca_out, steal) in enumerate(
        [(clean, clean, 0.0), (clean, slow, 0.6), (clean, clean, 0.05)], start=1
    ):
        b, e = _record("vanilla", rnd, base_out, None), _record("esca", rnd, esca_out, {})
        b.server_user_us, b.server_sys_us = 5.0, 15.0
        e.server_user_us, e.server_sys_us = (6.0, 18.0) if steal > 0.1 else (5.0, 14.6)
        e.steal_cpu, b.steal_cpu = steal, 0.0
        recs += [b, e]
    res = Result(BenchConfig(modes=("vanilla", "esca"), rounds=3), Pinning(note="n"), {}, recs)
    (case,) = report.summarise(res)
    esca_m = next(m for m in case.modes if m.mode == "esca")
    assert esca_m.quiet_rounds == 2
    assert esca_m.ratio_quiet == pytest.approx(1.0)
    assert esca_m.cpu_ratio_quiet == pytest.approx(19.6 / 20.0)
    assert esca_m.cpu_ratio_rounds == pytest.approx([0.98, 1.2, 0.98])
    text = report.format_text(res)
    assert "esca: 2 of 3 rounds: requests/s 1.00x, server CPU/req 0.98x" in text
    assert "esca round 2: 0.60" in text  # the steal warning names it
    md = report.format_markdown_json(report.to_json(res))
    assert "esca 2 of 3: requests/s 1.00x, server CPU/req 0.98x" in md
    # all rounds quiet: no separate view
    for r in recs:
        r.steal_cpu = 0.0
    assert "quiet rounds" not in report.format_text(res)


def test_other_cpu() -> None:
    a = CpuSnapshot(when=10.0, busy=100.0, server=20.0, children=5.0)
    b = CpuSnapshot(when=12.0, busy=103.0, server=21.0, children=6.0)
    assert other_cpu(a, b) == pytest.approx(0.5)  # (3 - 1 - 1) CPU-s over 2 s
    assert other_cpu(a, None) is None
    # ksoftirqd's time is the run's own network work, not other load
    c = CpuSnapshot(when=10.0, busy=100.0, server=20.0, children=5.0, softirqd=1.0)
    d = CpuSnapshot(when=12.0, busy=103.0, server=21.0, children=6.0, softirqd=1.8)
    assert other_cpu(c, d) == pytest.approx(0.1)
    snap = CpuSnapshot.take([])
    assert snap is not None and snap.busy > 0 and snap.softirqd >= 0
    assert snap.steal >= 0
    # steal time is the host's, counted apart from other processes' load
    e = CpuSnapshot(when=10.0, busy=100.0, server=20.0, children=5.0, steal=3.0)
    f = CpuSnapshot(when=12.0, busy=103.0, server=21.0, children=6.0, steal=4.2)
    assert other_cpu(e, f) == pytest.approx(0.5)
    assert steal_cpu(e, f) == pytest.approx(0.6)
    assert steal_cpu(e, None) is None


# ---------------------------------------------------------------- real runs


def check_report(
    data: dict[str, Any], config: str, modes: list[str], file: str = "a20.html"
) -> None:
    assert data["schema"] == report.SCHEMA and not data["interrupted"]
    assert data["config"]["config"] == config and data["config"]["modes"] == modes
    assert data["command"].startswith("esca bench")
    machine = data["machine"]
    assert machine["commit"] and machine["kernel"] and machine["cpus"] >= 1
    assert "cpu_model" in machine and machine["loadavg_start"] and machine["loadavg_end"]
    assert 10 < machine["kernel_entry"]["ns"] < 100_000, machine["kernel_entry"]
    assert "getppid" in machine["kernel_entry"]["method"]
    (case,) = data["cases"]
    assert case["file"] == file and case["baseline"] == "vanilla"
    assert list(case["modes"]) == modes
    for name, m in case["modes"].items():
        assert m["rounds"] == 1 and len(m["runs"]) == 1, name
        assert m["requests_per_sec"]["median"] > 0, name
        assert m["transfer_per_sec"]["median"] > 0, name
        assert isinstance(m["ratio"], float) and m["ratio"] > 0, name
        assert m["errors"] == 0 and m["socket_errors"] == 0 and m["non_2xx"] == 0, m["flags"]
        assert not m["flagged"], m["flags"]
        epr = m["kernel_entries_per_request"]
        if epr == "n/a":
            assert m["kernel_entries_reason"], name
        else:
            assert epr["median"] > 0, name
        run = m["runs"][0]
        assert run["other_cpu"] is None or run["other_cpu"] >= 0
        # the server's CPU per request, split user/system, and wrk's
        # (user time may round to 0 ticks in a 1 s run on a loaded machine)
        assert run["server_user_us_per_request"] >= 0, name
        assert run["server_sys_us_per_request"] > 0, name
        assert run["wrk_us_per_request"] > 0, name
        assert m["server_sys_us_per_request"]["median"] > 0, name
        assert run["verified"] is True and run["problems"] == [], run["problems"]
        if epr != "n/a":
            # entries x cost as a share of vanilla's CPU per request
            assert 0 < m["entries_cpu_share_of_baseline"] < 10, name
        assert isinstance(m["cpu_saved_vs_baseline"], float), name
        if name == "vanilla":
            assert run["stats"] is None and m["deferred_per_request"] is None
        else:
            assert run["stats"]["deferred"] > 0, name
            assert m["deferred_per_request"]["median"] > 0, name
            assert m["mean_batch_size"]["median"] >= 1, name
    assert case["modes"]["vanilla"]["ratio"] == 1.0


@pytest.mark.skipif(skip_reason("lighttpd") is not None, reason=skip_reason("lighttpd") or "")
def test_bench_quick_lighttpd(tmp_path: Path) -> None:
    out, png, md = tmp_path / "out.json", tmp_path / "out.png", tmp_path / "out.md"
    args = ["bench", "--quick", "--json", str(out), "--markdown", str(md)]
    if report.plot_available() == "":
        args += ["--plot", str(png)]
    p = subprocess.run([*esca(), *args], capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    check_report(json.loads(out.read_text()), "lighttpd", ["vanilla", "seed", "esca"])
    assert "a kernel entry costs" in p.stderr
    assert "vanilla" in p.stdout and "ratio" in p.stdout and "entries/req" in p.stdout
    assert "round 1/1 esca" in p.stderr  # progress
    assert md.read_text().count("\n| ") >= 4
    if "--plot" in args:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


CONFIG_NAMES = tuple(CONFIGS)
# configs whose run also counts kernel entries (perf adds ~3 s a config: one
# server of each kind, nginx's with several workers, one perf pid each)
PERF_CONFIGS = {"lighttpd", "nginx-debian"}


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_bench_config(name: str, tmp_path: Path) -> None:
    """One short real run of each config, vanilla and esca: zero errors, the
    fetched body byte-exact, the JSON's fields, and markdown from the JSON."""
    sc = CONFIGS[name]
    why = skip_reason(sc.binary) if sc.kind != "asyncio" else skip_reason("wrk")
    if why:
        pytest.skip(why)
    out = tmp_path / "out.json"
    perf = "1" if name in PERF_CONFIGS else "0"
    argv = [
        "bench", "--config", name, "--modes", "vanilla,esca", "--rounds", "1",
        "--duration", "1", "--warmup", "0", "--perf-seconds", perf, "--json", str(out),
    ]  # fmt: skip
    p = subprocess.run([*esca(), *argv], capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    data = json.loads(out.read_text())
    page = sc.index_page
    check_report(data, name, ["vanilla", "esca"], page[0] if page else "a20.html")
    assert data["command"] == "esca " + " ".join(argv)
    assert data["config"]["server"] == sc.kind
    case = data["cases"][0]
    assert case["url_path"] == ("/" if page else "/a20.html")
    if perf == "1":
        assert "ceiling:" in p.stdout and "kernel entries a request" in p.stdout
    else:
        assert "ceiling: n/a" in p.stdout and "not counted (--perf-seconds 0)" in p.stdout
    for m in case["modes"].values():
        run = m["runs"][0]
        if sc.kind == "nginx":
            workers = sc.workers if sc.workers != "auto" else str(os.cpu_count())
            assert run["server_processes"] == 1 + int(workers), m["mode"]
            if run["kernel_entries"] is not None:
                assert len(run["perf_pids"]) == run["server_processes"]
        else:
            assert run["server_processes"] == 1
    # README tables come from the JSON: they say which file and command made them
    md = subprocess.run(
        [*esca(), "bench", "--from", str(out)], capture_output=True, text=True, check=False
    )
    assert md.returncode == 0, md.stderr
    assert f"`esca bench --from {out}`" in md.stdout and data["command"] in md.stdout
    assert data["machine"]["commit"] in md.stdout and "| vanilla |" in md.stdout


@pytest.mark.parametrize("name", [n for n, c in CONFIGS.items() if c.access_log])
def test_access_log_written(name: str, tmp_path: Path) -> None:
    """The access-log configs do log: one line a request, in the work directory."""
    sc = CONFIGS[name]
    if shutil.which(sc.binary) is None:
        pytest.skip(f"{sc.binary} not installed")
    www = tmp_path / "www"
    www.mkdir()
    (www / "a.html").write_bytes(b"hello\n")
    srv = start_on_free_port(
        sc.kind, "vanilla", tmp_path / "w", lambda port: sc.make(www, port, tmp_path / "w")
    )
    try:
        for _ in range(3):
            with urllib.request.urlopen(f"{srv.url}/a.html", timeout=10) as r:
                assert r.read() == b"hello\n"
    finally:
        srv.check_stopped()
    lines = (tmp_path / "w" / "access.log").read_text().splitlines()
    assert len(lines) == 3 and all("GET /a.html" in ln for ln in lines), lines


def test_entry_cost() -> None:
    """The C loop of getppid: a positive cost in a sane range, the loop's own
    cost beside it and much smaller."""
    cost = perf.entry_cost(iterations=20_000, repeats=3)
    assert 10 < cost.ns < 100_000, cost
    assert 0 <= cost.loop_ns < cost.ns
    assert "getppid" in cost.method and "pyesca._core" in cost.method


def test_missing_server_binary(tmp_path: Path) -> None:
    """No nginx on PATH: one line naming it and the package, exit 2."""
    p = subprocess.run(
        [*esca(), "bench", "--config", "nginx-debian"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PATH": str(tmp_path)},
    )
    assert p.returncode == 2, p.stderr
    assert p.stderr == "esca bench: nginx not found (apt-get install nginx)\n"


def test_help_lists_configs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--help"]) == 0
    text = capsys.readouterr().out.split("configs (--config NAME):\n", 1)[1]
    for name, sc in CONFIGS.items():
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(name + " "))
        assert sc.about.split()[0] in line, line


def test_cli_config_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--config", "nginx-debian", "--size", "100"]) == 2
    assert "serves its own 615 B page" in capsys.readouterr().err
    assert main(["bench", "--config", "nginx", "--server", "lighttpd"]) == 2
    assert main(["bench", "--config", "apache"]) == 2


# ---- benchmarks/summary.py: the README's summary table from saved JSON ------

SUMMARY = Path(__file__).parent.parent / "benchmarks" / "summary.py"
RESULTS = Path(__file__).parent.parent / "benchmarks" / "results"


def test_summary_table_keeps_every_mode_and_flags_losses(tmp_path: Path) -> None:
    files = sorted(RESULTS.glob("*.json"))
    assert files, "benchmarks/results holds the saved runs the README cites"
    # a pinned run whose esca lost: the row must say so, not drop it
    doc = json.loads(files[0].read_text())
    case = doc["cases"][0]
    for r in case["modes"]["esca"]["runs"]:
        r["server_user_us_per_request"] = 10 * (r["server_user_us_per_request"] or 1)
    lost = tmp_path / "lost.json"
    lost.write_text(json.dumps(doc))
    p = subprocess.run([sys.executable, str(SUMMARY), *map(str, files), str(lost)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    rows = [line for line in p.stdout.splitlines() if line.startswith("| ")][2:]
    want = {(json.loads(f.read_text())["config"]["config"], m)
            for f in files for c in json.loads(f.read_text())["cases"]
            for m in c["modes"] if m != "vanilla"}
    got = {(r.split("|")[1].strip(), r.split("|")[3].strip()) for r in rows}
    assert want <= got
    cfg = doc["config"]["config"]
    loser = [r for r in rows if r.split("|")[1].strip() == cfg and "| esca |" in r]
    if "| commit |" in p.stdout:  # files of several commits: the doctored file's rows
        loser = [r for r in loser if f"| {doc['machine']['commit']} |" in r]
    assert loser and all(r.rstrip().endswith("| NO |") for r in loser), loser
    for f in files:
        assert f"`{f.name}`" in p.stdout  # each file's command and machine under it
    # vanilla-again (the server without pyesca once more): its row is the
    # noise floor, never a bound met or missed
    case["modes"]["vanilla-again"] = json.loads(json.dumps(case["modes"]["vanilla"]))
    for r in case["modes"]["vanilla-again"]["runs"]:
        r["mode"] = "vanilla-again"
    again = tmp_path / "again.json"
    again.write_text(json.dumps(doc))
    p = subprocess.run([sys.executable, str(SUMMARY), str(again)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    row = [r for r in p.stdout.splitlines() if "| vanilla-again |" in r]
    assert len(row) == 1 and row[0].rstrip().endswith("| noise floor |"), row
    bad = subprocess.run([sys.executable, str(SUMMARY), str(tmp_path / "none.json")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "no such file" in bad.stderr


def test_summary_quiet_column(tmp_path: Path) -> None:
    """A round with steal time is left out of the quiet ratios, and the
    column says how many rounds remain; with every round quiet, "all"."""
    pinned = next(f for f in sorted(RESULTS.glob("*.json"))
                  if json.loads(f.read_text())["pinning"].get("server_cpus")
                  and len(json.loads(f.read_text())["cases"][0]["modes"]["esca"]["runs"]) >= 3)
    doc = json.loads(pinned.read_text())
    case = doc["cases"][0]
    runs = case["modes"]["esca"]["runs"]
    for mode in case["modes"].values():
        for r in mode["runs"]:
            r["other_cpu"], r["steal_cpu"] = 0.0, 0.0
    quiet_doc = tmp_path / "quiet.json"
    quiet_doc.write_text(json.dumps(doc))
    runs[0]["steal_cpu"] = 0.6  # the host stole the vCPUs in esca's round 1
    runs[0]["server_user_us_per_request"] = 100 * (runs[0]["server_user_us_per_request"] or 1)
    stolen = tmp_path / "stolen.json"
    stolen.write_text(json.dumps(doc))

    def esca_row(path: Path) -> list[str]:
        p = subprocess.run([sys.executable, str(SUMMARY), str(path)],
                           capture_output=True, text=True, timeout=60, check=False)
        assert p.returncode == 0, p.stderr
        row = next(r for r in p.stdout.splitlines()
                   if r.startswith("| ") and r.split("|")[3].strip() == "esca")
        return [c.strip() for c in row.split("|")]

    assert esca_row(quiet_doc)[6] == "-, all"  # no unpinned run; all quiet
    cells = esca_row(stolen)
    n = len(runs)
    assert cells[6].startswith("-, ") and cells[6].endswith(f"x ({n - 1}/{n})"), cells
    assert float(cells[6].split(", ")[1].split("x")[0]) < 2  # the stolen round is out


def test_summary_same_library(tmp_path: Path) -> None:
    """--same-library merges the rows of commits whose library sources are
    the same (git says so) and refuses commits that changed native/."""
    top = SUMMARY.parent.parent
    for c in ("00ec3dd", "c7f0f4f"):
        if subprocess.run(["git", "-C", str(top), "cat-file", "-e", f"{c}^{{commit}}"],
                          capture_output=True, check=False).returncode:
            pytest.skip(f"the checkout has no history back to {c} (shallow clone)")
    src = next(f for f in sorted(RESULTS.glob("*.json"))
               if json.loads(f.read_text())["machine"].get("commit") == "00ec3dd")
    doc = json.loads(src.read_text())
    a, b, c = (tmp_path / n for n in ("a.json", "b.json", "c.json"))
    a.write_text(json.dumps(doc))
    doc["machine"]["commit"] = "00ec3dd-dirty"  # the same commit, run uncommitted
    b.write_text(json.dumps(doc))
    doc["machine"]["commit"] = "c7f0f4f"  # an earlier commit: native/ differs
    c.write_text(json.dumps(doc))

    def run(*args: Path | str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(SUMMARY), *map(str, args)],
                              capture_output=True, text=True, timeout=60, check=False)

    split = run(a, b)
    assert split.returncode == 0 and "| commit |" in split.stdout
    merged = run("--same-library", a, b)
    assert merged.returncode == 0, merged.stderr
    assert "| commit |" not in merged.stdout
    def rows(out: str) -> list[str]:
        return [r for r in out.splitlines() if r.startswith("| ")][2:]

    assert rows(merged.stdout) and len(rows(split.stdout)) == 2 * len(rows(merged.stdout))
    bad = run("--same-library", a, c)
    assert bad.returncode == 2 and "differ in native" in bad.stderr
