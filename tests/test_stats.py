"""`esca stats` and pyesca.stats, on hand-written stats files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pyesca import stats

ESCA = [sys.executable, "-m", "pyesca.cli"]

MASTER: dict[str, Any] = {
    "version": 1,
    "pid": 100,
    "executor": "uring",
    "fallback_reason": "",
    "syscalls": {
        "writev": {
            "seen": 10,
            "deferred": 9,
            "errors_surfaced": 1,
            "passed": {"disabled": 0, "not_selected": 0, "fd": 1, "args": 0, "size": 0},
        },
        "close": {"seen": 4, "deferred": 3, "errors_surfaced": 0, "passed": {"fd": 1}},
    },
    "flushes": {"explicit": 0, "wait": 5, "budget": 0, "sync": 1, "lifecycle": 1, "timer": 0},
    "batch_hist": [3, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    "deferred": 12,
    "kernel_entries": 4,
    "kernel_entries_saved": 8,
    "ops_executed": 12,
    "completed": 12,
    "errors": 1,
    "errors_surfaced": 1,
    "short_completed": 2,
    "resubmitted": 0,
    "fallbacks": 0,
    "bytes_deferred": 1234,
    "threads": 1,
}
# an older/newer library: keys missing, one unknown
WORKER: dict[str, Any] = {
    "pid": 101,
    "executor": "sequential",
    "fallback_reason": "io_uring_setup: EPERM",
    "syscalls": {"writev": {"seen": 2, "deferred": 2}, "sendfile": {"seen": 1, "deferred": 1}},
    "flushes": {"wait": 1, "brand_new": 2},
    "batch_hist": [0, 1],
    "fallbacks": 1,
}


@pytest.fixture
def stats_path(tmp_path: Path) -> Path:
    p = tmp_path / "esca.json"
    p.write_text(json.dumps(MASTER))
    (tmp_path / "esca.json.101").write_text(json.dumps(WORKER))
    (tmp_path / "esca.json.tmp.102").write_text("{partial")  # a write in progress
    return p


def test_load_and_aggregate(stats_path: Path) -> None:
    r = stats.load(stats_path)
    assert [p.pid for p in r.processes] == [100, 101]
    m, w = r.processes
    assert m.syscalls["writev"].passed_total == 1
    assert m.flushes_total == 7 and m.flushes_with_entries == 5
    assert m.mean_batch_size == pytest.approx(12 / 5)
    assert w.deferred == 3  # summed from the syscalls when the key is missing
    assert w.flushes["brand_new"] == 2
    t = r.total
    assert t.pid is None
    assert t.syscalls["writev"].seen == 12 and t.syscalls["writev"].deferred == 11
    assert t.syscalls["sendfile"].deferred == 1
    assert t.deferred == 15 and t.fallbacks == 1 and t.short_completed == 2
    assert t.batch_hist[:2] == [3, 2]
    assert t.mean_batch_size == pytest.approx(15 / 6)
    assert t.executor == "uring,sequential"
    assert t.fallback_reason == "io_uring_setup: EPERM"


def test_empty_process_has_no_batches(tmp_path: Path) -> None:
    p = tmp_path / "s"
    p.write_text("{}")
    s = stats.load(p).total
    assert (s.deferred, s.flushes_with_entries, s.mean_batch_size) == (0, 0, 0.0)


def test_cli_text(stats_path: Path) -> None:
    p = subprocess.run([*ESCA, "stats", str(stats_path)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "process pid 100" in out and "process pid 101" in out
    assert "total of 2 processes" in out
    assert "mean batch size  2.40" in out
    assert "fd 1" in out  # a pass reason
    assert "io_uring_setup: EPERM" in out


def test_cli_per_request(stats_path: Path) -> None:
    """--requests N: deferred calls per request, per syscall and in total."""
    p = subprocess.run(
        [*ESCA, "stats", "--requests", "4", str(stats_path)], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    # writev: 9 deferred in the root process over 4 requests
    assert any(
        line.split()[:4] == ["writev", "10", "9", "2.25"] for line in p.stdout.splitlines()
    ), p.stdout
    assert "per request      3.00 calls deferred" in p.stdout


def test_cli_json(stats_path: Path) -> None:
    p = subprocess.run(
        [*ESCA, "stats", "--json", str(stats_path)], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert len(d["processes"]) == 2
    assert d["total"]["syscalls"]["writev"]["deferred"] == 11
    assert d["total"]["mean_batch_size"] == pytest.approx(15 / 6, abs=1e-3)
    assert d["processes"][0]["syscalls"]["writev"]["passed_total"] == 1


def test_cli_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    p = subprocess.run([*ESCA, "stats", str(missing)], capture_output=True, text=True)
    assert p.returncode == 1
    assert p.stderr == f"esca: {missing}: No such file or directory\n"


def test_cli_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    p = subprocess.run([*ESCA, "stats", str(bad)], capture_output=True, text=True)
    assert p.returncode == 1
    assert p.stderr.startswith(f"esca: {bad}: not a stats file")


def test_cli_bad_values_one_line(tmp_path: Path) -> None:
    """Numbers past a float's range, JSON nested past the parser's depth and
    a directory: one line and status 1, no traceback (the Python API's
    audit, session 10)."""
    huge = tmp_path / "huge.json"
    huge.write_text('{"version": 1, "pid": 1e999, "deferred": 1e999}')
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000)
    for path, rc in ((huge, 0), (deep, 1), (tmp_path, 1)):
        p = subprocess.run([*ESCA, "stats", str(path)], capture_output=True, text=True)
        assert p.returncode == rc, (path, p.returncode, p.stderr)
        assert "Traceback" not in p.stderr, p.stderr
        if rc:
            assert p.stderr.startswith("esca: ") and p.stderr.count("\n") == 1, p.stderr
