"""Faults while the load runs: the server keeps serving, completed responses whole.

Against lighttpd and nginx (2 workers), plainly (the control) and under
`esca run` with each executor, while pyesca.loadcheck keeps 200 keep-alive
connections busy (4 s; 60 s with --long), fault clients:

- reset mid-response: read part of a 64 MiB or 1 MiB body, then close with
  SO_LINGER 0 (RST);
- half-close: send the request, shutdown(SHUT_WR), read the response;
- zero window: a 4 KiB receive buffer, stop reading a 16 MiB body for 2 s
  (ESCA_FLUSH_US is 2 ms, the watchdog looks every 10 ms); meanwhile a fresh
  connection must get whole files during the stall; then the rest of the
  body, and one more request on the same connection;
- connect and vanish: close at once; send half a request line and close;
  ask for 64 MiB and close without reading; stay idle to the end.

Asserted: every response a fault client completed is whole (sha256); the
load client saw no mismatch and no error; afterwards every file, the 64 MiB
one too, is served whole; the server then stops cleanly (no crash).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from servers.conftest import mode_skip_reason
from servers.harness import HttpClient, Response, run_threads

from .rel import Load, make_docroot, running

pytestmark = pytest.mark.reliability

KINDS = ("lighttpd", "nginx")
LOAD_CONNECTIONS = 200
SHORT_S = 4.0
LONG_S = 60.0
STALL_S = 2.0
BIG = "f67108864.bin"
MID = "f1048576.bin"
HUGE = "f16777216.bin"
SMALL = ("f0.bin", "f1.bin", "f100.bin", "f4097.bin", "f20480.bin", "f65537.bin")


@pytest.fixture(scope="module")
def fault_docroot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    path = make_docroot(tmp_path_factory.mktemp("fault-docroot"))
    files = json.loads((path / "loadcheck.json").read_text())["files"]
    return path, {name: f["sha256"] for name, f in files.items()}


def whole(r: Response, sha: dict[str, str], name: str) -> None:
    assert r.status == 200, f"{name}: status {r.status}"
    assert r.sha256 == sha[name], f"{name}: body of {len(r.body)} bytes differs"


def faults(port: int, sha: dict[str, str], until: float, mode: str) -> list[Callable[[], None]]:
    """The fault clients, each repeating until `until`."""

    def resetter(i: int) -> Callable[[], None]:
        def go() -> None:
            k = 0
            while time.monotonic() < until:
                name = BIG if (i + k) % 2 == 0 else MID
                c = HttpClient(port)
                try:
                    c.send_request(name)
                    status, headers = c.read_head()
                    assert status == 200
                    c.read_body(int(headers["content-length"]), limit=(16 << 10) * (1 + i + k))
                finally:
                    c.reset()
                k += 1

        return go

    def half_closer(i: int) -> Callable[[], None]:
        def go() -> None:
            while time.monotonic() < until:
                for name in (MID, SMALL[i % len(SMALL)]):
                    with HttpClient(port) as c:
                        c.send_request(name)
                        c.sock.shutdown(socket.SHUT_WR)
                        status, headers = c.read_head()
                        body = c.read_body(int(headers["content-length"]))
                        whole(Response(status, headers, body), sha, name)

        return go

    def probes(stall_end: float) -> None:
        while time.monotonic() < stall_end:
            with HttpClient(port) as probe:
                for name in SMALL:
                    whole(probe.get(name), sha, name)
            time.sleep(0.2)

    def staller() -> None:
        with HttpClient(port, rcvbuf=4096) as c:
            c.send_request(HUGE)
            status, headers = c.read_head()
            length = int(headers["content-length"])
            first = c.read_body(length, limit=64 << 10)
            stall_end = time.monotonic() + STALL_S
            # the others are served while this one does not read (every
            # executor: sequential parks too)
            probes(stall_end)
            rest = c.read_body(length - len(first))
            whole(Response(status, headers, first + rest), sha, HUGE)
            whole(c.get("f100.bin"), sha, "f100.bin")

    def vanisher() -> None:
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(10)]
        try:
            while time.monotonic() < until:
                for _ in range(10):
                    socket.create_connection(("127.0.0.1", port), timeout=10).close()
                for _ in range(5):
                    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                        s.sendall(b"GET /f1")
                for _ in range(5):
                    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                        s.sendall(f"GET /{BIG} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                time.sleep(0.1)
        finally:
            for s in idle:
                s.close()

    return [
        *(resetter(i) for i in range(4)),
        *(half_closer(i) for i in range(2)),
        staller,
        vanisher,
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_faults_under_load(
    kind: str,
    mode: str,
    fault_docroot: tuple[Path, dict[str, str]],
    tmp_path: Path,
    long_run: bool,
) -> None:
    reason = mode_skip_reason(mode)
    if reason:
        pytest.skip(reason)
    docroot, sha = fault_docroot
    seconds = LONG_S if long_run else SHORT_S
    with running(kind, mode, docroot, tmp_path) as srv:
        load = Load(srv.url, LOAD_CONNECTIONS, seconds, tmp_path)
        try:
            until = time.monotonic() + seconds - 1
            run_threads(faults(srv.port, sha, until, mode), timeout=seconds + 120)
            summary = load.result()
        finally:
            load.stop()
        # the server still serves everything whole
        with HttpClient(srv.port) as c:
            for name in sorted(sha, key=lambda n: int(n[1:-4])):
                whole(c.get(name), sha, name)
    print(
        json.dumps(
            {
                "test": "faults",
                "kind": kind,
                "mode": mode,
                **{k: summary[k] for k in ("requests", "bytes", "mismatches", "errors")},
            }
        )
    )
    assert summary["mismatches"] == 0, summary["mismatch_samples"]
    assert summary["error_total"] == 0, summary["errors"]
    assert summary["requests"] > LOAD_CONNECTIONS, summary
