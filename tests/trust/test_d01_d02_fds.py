"""Issue 12 defects 1 and 2: bytes to the wrong connection; fd numbers the
library closes late or owns (close_range, closefrom, the daemon loop, dup2)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from .trust import assert_deferred, modes, prog, read_until_eof, run, start


@pytest.mark.parametrize("mode", modes())
def test_d01_reply_reaches_its_own_client(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("d01_wrong_conn", tmp_path_factory)
    p, st = start(mode, [exe], tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None
        port = int(p.stdout.readline())
        a = socket.create_connection(("127.0.0.1", port), timeout=20)
        b = socket.create_connection(("127.0.0.1", port), timeout=20)
        got_a, eof_a = read_until_eof(a)
        got_b, eof_b = read_until_eof(b)
        a.close()
        b.close()
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert (got_a, eof_a) == (b"reply-for-A\n", True), (got_a, got_b, err)
    assert (got_b, eof_b) == (b"hello-B\n", True), (got_a, got_b, err)
    assert_deferred(mode, st, write=2, close=1)


@pytest.mark.parametrize("how", ["close_range", "closefrom"])
@pytest.mark.parametrize("mode", modes())
def test_d02_pending_close_then_close_range(
    mode: str, how: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("d02_pending_close", tmp_path_factory)
    r = run(mode, [exe, how, tmp_path], tmp_path)
    assert r.rc == 0, r
    assert r.lines() == [
        "write=6",
        "pread=6 data-b",
        "getfd=ok",
        "close=0",
        "peer=bye EOF",
    ], r
    assert (tmp_path / "b.txt").read_bytes() == b"data-b"
    # the socket's write and close were pending at the close_range
    assert_deferred(mode, r.stats_path, write=1, close=1)


EXPECT_INTERNAL = (
    ["closing=0"]
    + [f"pair {i}: 2 bytes, EOF" for i in range(12)]
    + [f"file {i}: write=10 read=10 'file-bytes'" for i in range(4)]
)


@pytest.mark.parametrize(
    "how,mode",
    [
        pytest.param(how, m.values[0], marks=m.marks, id=f"{how}-{m.id}")
        for how in ("close_range", "closefrom", "loop", "dup2", "dup3")
        for m in modes()
    ],
)
def test_d02_library_fds_untouchable(
    mode: str, how: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("d02_internal", tmp_path_factory)
    r = run(mode, [exe, how, tmp_path], tmp_path)
    assert r.rc == 0, r
    expect = list(EXPECT_INTERNAL)
    if how.startswith("dup"):
        expect.insert(0, "dup: 1 bytes, EOF")
    assert r.lines() == expect, r
    # every pair's write and close, and the set-up pair's, were deferred
    assert_deferred(mode, r.stats_path, write=13, close=13)
