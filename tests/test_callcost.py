"""benchmarks/callcost.py: the instructions libesca.so adds per call, counted
under valgrind (no timing).  What is asserted is behaviour, not speed: the
driver's calls all returned what they should in every mode, deferring
through the ring made fewer kernel entries a round than the 33 calls, a
thread stepped aside made the program's own (the same 33, give or take the
library's set-up), and every mode under the library costs instructions
(a table that showed none would measure nothing)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    not shutil.which("valgrind"), reason="valgrind missing (make deps installs it)"
)


def test_callcost_counts_every_mode(tmp_path: Path) -> None:
    out = tmp_path / "callcost.json"
    p = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "callcost.py"), "--quick", "--wait", "poll",
         "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert p.returncode == 0, p.stderr
    rows = {r["mode"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"plain", "ring", "flat", "aside"}
    assert rows["plain"]["added_per_call"] == 0
    assert rows["plain"]["entries_per_round"] == pytest.approx(33, abs=0.1)
    # the ring: 16 sends in one io_uring_enter with the wait, the reads apart
    assert rows["ring"]["entries_per_round"] < 24, rows["ring"]
    # aside: the program's calls, as they come
    assert rows["aside"]["entries_per_round"] == pytest.approx(33, abs=0.5), rows["aside"]
    for m in ("ring", "flat", "aside"):
        assert rows[m]["added_per_call"] > 0, rows[m]
    # the table names every mode
    for m in rows:
        assert f"poll   {m}" in p.stdout, p.stdout


@pytest.mark.skipif(not (shutil.which("nginx") and shutil.which("wrk")),
                    reason="nginx or wrk missing (make deps installs them)")
def test_servercost_counts_nginx_requests(tmp_path: Path) -> None:
    """benchmarks/servercost.py: nginx's requests under callgrind, plainly and
    aside: the library's functions show up only under the library, and cost
    something (an empty profile would measure nothing)."""
    out = tmp_path / "servercost.json"
    p = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "servercost.py"), "--modes", "plain,aside",
         "--seconds", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert p.returncode == 0, p.stderr
    rows = {r["mode"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"plain", "aside"}
    for r in rows.values():
        assert r["requests"] > 100, r
        # nginx's own work a request: thousands of instructions, not a count
        # of start-up spread over a few requests
        assert 3_000 < r["instructions_per_request"] < 100_000, r
    assert rows["plain"]["library_per_request"] == 0
    assert rows["plain"]["library_functions"] == {}
    assert rows["aside"]["library_per_request"] > 0, rows["aside"]
    assert rows["aside"]["instructions_per_request"] > rows["plain"]["instructions_per_request"]
    assert "aside" in p.stdout and "plain" in p.stdout


def test_servercost_usage_errors() -> None:
    for argv in (["--modes", "bogus"], ["--seconds", "0"]):
        p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "servercost.py"), *argv],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 2, (argv, p.stderr)
        assert p.stderr.count("\n") == 1 and p.stderr.startswith("servercost: "), p.stderr
