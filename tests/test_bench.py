"""`esca bench`: the report's shape and that no errors occurred, never the speed.

The two `--quick` runs start real servers (lighttpd, nginx) and wrk; each
takes about 15 s.  The rest checks parsing and formatting without servers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
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
)
from pyesca.bench.runner import BenchResult as Result
from pyesca.bench.servers import file_name
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
        BenchConfig(server="apache"),
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
    assert "--levers" in (MODES["seed"].esca_args or ())


def test_cli_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--modes", "vanilla,turbo"]) == 2
    assert "unknown mode 'turbo'" in capsys.readouterr().err
    assert main(["bench", "--duration", "0.5"]) == 2
    assert main(["bench", "--connections", "a,b"]) == 2


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
    assert "1.22!" in text and "! esca: round 1: measured run: read 8176" in text
    md = report.format_markdown(res)
    assert "| esca |" in md and "1.22!" in md
    js = report.to_json(res)
    json.dumps(js)
    esca_js = js["cases"][0]["modes"]["esca"]
    assert esca_js["errors"] == 8176 and esca_js["flagged"]
    assert esca_js["kernel_entries_per_request"]["median"] == pytest.approx(3.0)


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


# ---------------------------------------------------------------- real runs


def check_report(data: dict[str, Any], server: str, modes: list[str]) -> None:
    assert data["schema"] == 1 and not data["interrupted"]
    assert data["config"]["server"] == server and data["config"]["modes"] == modes
    (case,) = data["cases"]
    assert case["file"] == "a20.html" and case["baseline"] == "vanilla"
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
        assert run["server_user_us_per_request"] > 0, name
        assert run["server_sys_us_per_request"] > 0, name
        assert run["wrk_us_per_request"] > 0, name
        assert m["server_sys_us_per_request"]["median"] > 0, name
        assert run["verified"] is True and run["problems"] == [], run["problems"]
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
    assert "vanilla" in p.stdout and "ratio" in p.stdout and "entries/req" in p.stdout
    assert "round 1/1 esca" in p.stderr  # progress
    assert md.read_text().count("\n| ") >= 4
    if "--plot" in args:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(skip_reason("nginx") is not None, reason=skip_reason("nginx") or "")
def test_bench_quick_nginx(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    p = subprocess.run(
        [*esca(), "bench", "--server", "nginx", "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    data = json.loads(out.read_text())
    check_report(data, "nginx", ["vanilla", "seed", "esca"])
    assert data["config"]["nginx_workers"] == 1
    for m in data["cases"][0]["modes"].values():
        run = m["runs"][0]
        if run["kernel_entries"] is not None:
            assert len(run["perf_pids"]) == 2  # master and its one worker
