"""Issue 12 defects 9 and 10: a deferred close changes file state after
close() returned (record locks, a listening port); write errors vanish.

Both are gone with the deferral scope (DESIGN.md, "Deferral scope"): a
regular file's calls and a listening socket's close are never deferred.
Each test asserts that the calls were passed through, not deferred, and
that the program sees what it sees plainly, so it fails if someone defers
them again without an answer to the defect."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
from pathlib import Path

import pytest

from .trust import assert_passed, modes, prog, run, start


def _locked_by_other(path: Path) -> bool:
    """Does another process hold a POSIX lock on path?  (F_SETLK probe)"""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


@pytest.mark.parametrize("mode", modes())
def test_d09_record_lock_survives_an_earlier_close(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("d09_close_state", tmp_path_factory)
    db = tmp_path / "db.sqlite"
    p, st = start(
        mode,
        [exe, "lock", db],
        tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert p.stdout is not None and p.stdin is not None
        line = p.stdout.readline()
        assert line == b"locked\n", (line, p.stderr.read() if p.stderr else b"")
        held = _locked_by_other(db)
        out, err = p.communicate(b"done\n", timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert held, f"{mode}: another process sees the file unlocked"
    # the file's close (the one before F_SETLK and the last) ran at once
    assert_passed(mode, st, close=2)


@pytest.mark.parametrize("mode", modes())
def test_d09_listening_port_free_after_close(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("d09_close_state", tmp_path_factory)
    r = run(mode, [exe, "port"], tmp_path)
    assert r.rc == 0, r
    assert r.lines() == ["bind again: ok", "listen again: ok"], r
    # the listening socket's close and the second socket's ran at once
    assert_passed(mode, r.stats_path, close=2)



@pytest.mark.parametrize("how", ["short", "fsync", "close"])
@pytest.mark.parametrize("mode", modes())
def test_d10_write_errors_reach_the_program(
    mode: str, how: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("d10_write_errors", tmp_path_factory)
    f = tmp_path / "out.bin"
    r = run(mode, [exe, how, f], tmp_path)
    assert r.rc == 0, r
    results = dict(line.split("=", 1) for line in r.lines())
    counts = [
        int(v) for k, v in results.items() if k.startswith("write") and re.fullmatch(r"\d+", v)
    ]
    size = f.stat().st_size
    assert size == 10, r
    # what the program was told it wrote is what the file holds ...
    assert sum(counts) == size, (r, results)
    # ... and the error is reported by some call (plain: the write itself;
    # a deferred write may report it one call late, from fsync or close)
    assert "File too large" in results.values(), (r, results)
    if mode != "plain":
        # every call's result as plain, and none deferred
        plain_dir = tmp_path / "plain"
        plain_dir.mkdir()
        p = run("plain", [exe, how, plain_dir / "out.bin"], plain_dir)
        assert r.lines() == p.lines(), (r, p)
        assert_passed(mode, r.stats_path, write=2, close=1)
