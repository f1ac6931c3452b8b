"""The levers beyond ESCA (ESCA_LEVERS), against a real epoll server
(progs/cork_server.py) and a real client: the same bytes as without the
library, TCP_CORK as the program set it, no response held back, no request
lost to a read answered without the kernel, and the levers really used.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import executor_params, executor_skip_reason

import pyesca
from pyesca import _core

PROGS = Path(__file__).parent / "progs"
LIB = Path(pyesca.__file__).parent / "libesca.so"
BODY = bytes(range(256)) * 80 + b"tail"  # 20,484 B, a distinct pattern


def start_server(
    tmp_path: Path, mode: str, levers: str, nreq: int, dawdle_ms: int = 0
) -> tuple[subprocess.Popen[bytes], int, Path]:
    body = tmp_path / "body.bin"
    body.write_bytes(BODY)
    port_file = tmp_path / f"port-{mode}-{levers}"
    stats = tmp_path / f"stats-{mode}-{levers}.json"
    env = dict(os.environ)
    if mode != "plain":
        reason = executor_skip_reason(mode)
        if reason:
            pytest.skip(reason)
        env.update(
            LD_PRELOAD=str(LIB),
            ESCA_EXECUTOR=mode,
            ESCA_LEVERS=levers,
            ESCA_STATS=str(stats),
        )
    args = [sys.executable, str(PROGS / "cork_server.py"), str(port_file), str(body), str(nreq)]
    if dawdle_ms:
        args += ["--dawdle", str(dawdle_ms)]
    p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while not port_file.exists():
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            raise AssertionError(p.communicate()[0].decode(errors="replace"))
        time.sleep(0.01)
    return p, int(port_file.read_text()), stats


def read_answer(c: socket.socket, buf: bytearray) -> tuple[str, bytes]:
    while b"\n" not in buf:
        d = c.recv(65536)
        assert d, "connection closed before an answer"
        buf += d
    line, _, rest = bytes(buf).partition(b"\n")
    _, rid, size = line.split()
    n = int(size)
    body = bytearray(rest)
    while len(body) < n:
        d = c.recv(65536)
        assert d, "connection closed inside a body"
        body += d
    buf[:] = body[n:]
    return rid.decode(), bytes(body[:n])


def finish(p: subprocess.Popen[bytes]) -> str:
    out = p.communicate(timeout=30)[0].decode(errors="replace")
    assert p.returncode == 0, out
    return out


def one_by_one(port: int, conns: int, per_conn: int) -> list[float]:
    """Each connection: a request, wait for its whole answer, the next.
    Returns the seconds each answer took."""
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
    bufs = [bytearray() for _ in socks]
    took = []
    try:
        for i in range(per_conn):
            for k, c in enumerate(socks):
                rid = f"{k}.{i}"
                t0 = time.monotonic()
                c.sendall(f"GET {rid}\n".encode())
                got_id, body = read_answer(c, bufs[k])
                took.append(time.monotonic() - t0)
                assert got_id == rid
                assert body == BODY
    finally:
        for c in socks:
            c.close()
    return took


@pytest.mark.parametrize("mode", executor_params(plain=True))
@pytest.mark.parametrize("levers", ["none", "all", "all,-sendfile"])
def test_cork_compose_same_bytes_and_cork_truthful(
    tmp_path: Path, mode: str, levers: str
) -> None:
    if mode == "plain" and levers != "none":
        pytest.skip("plain has no levers")
    p, port, stats = start_server(tmp_path, mode, levers, nreq=40)
    try:
        took = one_by_one(port, conns=4, per_conn=10)
    finally:
        out = finish(p)
    # the program saw TCP_CORK on inside each answer and off after it
    assert out.split() == ["served", "40", "corks", "10"], out
    # nothing held back: a response left with MSG_MORE waits >= 200 ms
    # for the kernel's probe timer; every one of these is a single exchange
    assert statistics.median(took) < 0.1, took
    if mode != "plain":
        s = json.loads(stats.read_text())
        if levers == "all,-sendfile" or (levers == "all" and mode == "sequential"):
            # both TCP_CORK calls of each answer composed into MSG_MORE
            assert s["setsockopt_composed"] >= 2 * 40 - 2, s
            assert s["reads_answered"] > 0, s
        if levers == "all" and mode == "uring":
            assert s["reads_answered"] > 0, s
            # the bodies went out as sendfile itself, not read + send, under
            # the kernel's cork (made real in the queue before each one, so
            # that the pushes go out together with the flush's TCP_CORK offs)
            assert s["sendfile_direct"] >= 40, s
            assert s["setsockopt_composed"] <= 2, s
            if "EPOLL_WAIT" in _core.uring_probe()["opcodes"]:
                assert s["waits_folded"] > 0, s
        if levers == "none":
            assert s["setsockopt_composed"] == 0
            assert s["reads_answered"] == 0
            assert s["levers"] == []
            assert s["sendfile_direct"] == 0
            assert s["waits_folded"] == 0


def test_read_answered_empty_loses_nothing(tmp_path: Path) -> None:
    """The client's second request arrives while the server dawdles between
    the read that drained the socket and the read after its answer: that read
    is answered EAGAIN without the kernel, and the level-triggered epoll wait
    after it must still deliver the request."""
    p, port, stats = start_server(tmp_path, "uring", "all", nreq=20, dawdle_ms=30)
    try:
        c = socket.create_connection(("127.0.0.1", port))
        buf = bytearray()
        for i in range(10):
            c.sendall(f"GET a{i}\n".encode())
            time.sleep(0.01)  # lands inside the server's dawdle
            c.sendall(f"GET b{i}\n".encode())
            c.settimeout(10)
            assert read_answer(c, buf) == (f"a{i}", BODY)
            assert read_answer(c, buf) == (f"b{i}", BODY)
        c.close()
    finally:
        finish(p)
    s = json.loads(stats.read_text())
    # after each of the 20 answers the read was answered (the one after an
    # "a" answer while the "b" request sat in the socket)
    assert s["reads_answered"] >= 20, s


@pytest.mark.parametrize("mode", executor_params())
@pytest.mark.parametrize("levers", ["all, -compose, bogus", "-compose"])
def test_levers_env_parsing(tmp_path: Path, mode: str, levers: str) -> None:
    """An unknown name is reported, -name takes one away, blanks around a name
    are dropped (lists.h, the grammar esca run --levers shares); a list that starts
    with -name does so from the default set (README's ESCA_LEVERS=-reads
    advice), as +name adds to it: it had meant no lever at all."""
    p, port, stats = start_server(tmp_path, mode, levers, nreq=4)
    try:
        one_by_one(port, conns=1, per_conn=4)
    finally:
        out = finish(p)
    if "bogus" in levers:
        assert "unknown lever 'bogus'" in out
    s = json.loads(stats.read_text())
    assert s["levers"] == ["reads", "sendfile", "fold", "adapt", "plain"]
    assert s["setsockopt_composed"] == 0
