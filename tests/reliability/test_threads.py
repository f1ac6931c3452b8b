"""A multi-threaded server keeps per-thread order and loses no byte.

threaded_server.c: 4 threads, 4 connections each, every thread writes its
own numbered records (write, writev and send in turn; the write buffer is
scribbled over right after the call) and meets the others at a barrier now
and then.  The client reads every connection to the end and checks that it
holds exactly one thread's records for that connection, numbered 0..N-1 in
order, each of the announced length and content.
"""

from __future__ import annotations

import re
import selectors
import socket
import subprocess
from pathlib import Path

import pytest

from servers.conftest import mode_skip_reason
from servers.harness import esca_command, esca_stats_json

from .conftest import HERE, compile_c

pytestmark = pytest.mark.reliability

THREADS = 4
CONNS = 4
RECORDS = 2000

RECORD = re.compile(rb"T(\d+) C(\d+) S(\d+) L(\d+)\|")


@pytest.fixture(scope="module")
def server_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_c(HERE / "threaded_server.c", tmp_path_factory.mktemp("threads"), "-lpthread")


def read_all(socks: list[socket.socket], timeout: float = 60.0) -> list[bytes]:
    sel = selectors.DefaultSelector()
    data = [bytearray() for _ in socks]
    for i, s in enumerate(socks):
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
    open_ = len(socks)
    while open_:
        events = sel.select(timeout)
        assert events, f"no byte for {timeout}s with {open_} connections open"
        for key, _ in events:
            i = key.data
            chunk = socks[i].recv(1 << 16)
            if chunk:
                data[i] += chunk
            else:
                sel.unregister(socks[i])
                open_ -= 1
    sel.close()
    return [bytes(d) for d in data]


def check_stream(data: bytes) -> tuple[int, int]:
    """(thread, conn) of a connection's records, all in order and whole."""
    pos = 0
    owner: tuple[int, int] | None = None
    seq = 0
    while pos < len(data):
        m = RECORD.match(data, pos)
        assert m, f"no record header at byte {pos}: {data[pos:pos + 40]!r}"
        t, c, s, n = (int(g) for g in m.groups())
        if owner is None:
            owner = (t, c)
        assert (t, c) == owner, f"record of T{t} C{c} in the stream of T{owner[0]} C{owner[1]}"
        assert s == seq, f"T{t} C{c}: record {s} where {seq} was due (byte {pos})"
        body = data[m.end() : m.end() + n]
        fill = bytes([ord("a") + (t * 7 + c * 3 + s) % 26]) * n
        assert body == fill, f"T{t} C{c} S{s}: body differs"
        assert data[m.end() + n : m.end() + n + 1] == b"\n", f"T{t} C{c} S{s}: no newline"
        pos = m.end() + n + 1
        seq += 1
    assert owner is not None, "empty stream"
    assert seq == RECORDS, f"T{owner[0]} C{owner[1]}: {seq} of {RECORDS} records"
    return owner


def test_threaded_server_keeps_order(mode: str, server_exe: Path, tmp_path: Path) -> None:
    reason = mode_skip_reason(mode)
    if reason:
        pytest.skip(reason)
    argv = [str(server_exe), str(THREADS), str(CONNS), str(RECORDS)]
    if mode != "plain":
        stats = tmp_path / "stats.json"
        argv = [*esca_command(), "run", "--executor", mode, "--stats", str(stats), "--", *argv]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    socks: list[socket.socket] = []
    try:
        assert p.stdout is not None
        port = int(p.stdout.readline())
        socks = [
            socket.create_connection(("127.0.0.1", port), timeout=30)
            for _ in range(THREADS * CONNS)
        ]
        streams = read_all(socks)
        rc = p.wait(60)
    finally:
        for s in socks:
            s.close()
        if p.poll() is None:
            p.kill()
            p.wait()
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    assert rc == 0, f"server exit {rc}: {err}"
    owners = [check_stream(d) for d in streams]
    assert sorted(owners) == sorted((t, c) for t in range(THREADS) for c in range(CONNS))
    total = sum(len(d) for d in streams)
    if mode != "plain":
        st = esca_stats_json(stats)["total"]
        # the test means something only if the writes were deferred
        assert st["deferred"] >= THREADS * CONNS * RECORDS // 2, st
        print(f"{mode}: deferred {st['deferred']}, flushes {st['flushes']}")
    print(f"{mode}: {THREADS * CONNS} connections, {THREADS * CONNS * RECORDS} records,"
          f" {total} bytes, all in order")
