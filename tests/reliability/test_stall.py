"""A client that does not read must not hold up the server's other clients.

Client A asks for a big file and reads nothing; then client B asks for 20
KiB.  Plainly, lighttpd and nginx (1 worker, so A and B share it) answer B at
once.  Under esca, nginx did not, two ways:
- 64 MiB: its deferred sendfile returns the whole chunk at once, nginx goes
  on sending, and the next call on A's socket waited in user space for the
  parked one (DESIGN.md, "Contract: order"), so the worker's event loop
  stopped until A read.  Now such a call on a non-blocking socket gets
  EAGAIN, as from a full socket, and the socket's edge-triggered
  registration is re-armed once the parked bytes are out.  Under sequential
  (which had nothing that parks) nginx queued every 2 MiB chunk behind the
  full socket: a sendfile behind parked bytes gets EAGAIN too.
- 3 MiB (its last chunk parks): nginx, told the last chunk went, closed the
  file, and that close waited for the sendfile reading it, parked on A: under
  uring and sequential alike.  Now the parked sendfile reads a dup of the
  file (esca_fd_keep_file) and the close does not wait.
- nginx-tcpinfo, 3 MiB: its access log line holds $tcpinfo_rtt, a
  getsockopt(TCP_INFO) on A's socket once the response went, its last bytes
  parked: the getsockopt waited for A to read them (a call that only looks at
  a non-blocking socket does not wait since session 17: before_fd_look).
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from pyesca.bench.servers import SERVERS, esca_command, start_on_free_port
from servers.conftest import mode_skip_reason
from servers.harness import MODES, HttpClient

from .rel import make_docroot

pytestmark = pytest.mark.reliability

B_TIMEOUT = 5.0  # an upper bound that only catches the stall

# A's file: 64 MiB (every chunk after the socket fills), ~3 MiB (the file's
# last chunk parks: on this loopback ~4 MB of it go before A's socket is full)
SIZES = {"64m": 64 << 20, "3m": 3_000_000}


def params() -> list[object]:
    out: list[object] = []
    for kind in ("lighttpd", "nginx"):
        for mode in MODES:
            for size in SIZES:
                out.append(pytest.param(kind, mode, size, id=f"{kind}-{mode}-{size}"))
    for mode in MODES:
        out.append(pytest.param("nginx-tcpinfo", mode, "3m", id=f"nginx-tcpinfo-{mode}-3m"))
    return out


@pytest.mark.parametrize(("kind", "mode", "size"), params())
def test_reader_that_stops_does_not_stall_others(
    kind: str, mode: str, size: str, tmp_path: Path
) -> None:
    reason = mode_skip_reason(mode)
    if reason:
        pytest.skip(reason)
    docroot = make_docroot(tmp_path / "root")
    files = json.loads((docroot / "loadcheck.json").read_text())["files"]
    sha = {n: f["sha256"] for n, f in files.items()}
    big = f"f{SIZES[size]}.bin"
    if big not in files:
        (docroot / big).write_bytes(b"x" * SIZES[size])

    server = kind.partition("-")[0]

    def argv(port: int) -> list[str]:
        opts: dict[str, object] = {"workers": 1} if server == "nginx" else {}
        if kind == "nginx-tcpinfo":
            opts.update(access_log=True, log_format="$request $status $tcpinfo_rtt")
        cmd = SERVERS[server](docroot, port, tmp_path, **opts)
        if mode == "plain":
            return cmd
        return [*esca_command(), "run", "--executor", mode, "--stats", str(stats), "--", *cmd]

    stats = tmp_path / "stats.json"

    srv = start_on_free_port(server, mode, tmp_path, argv)
    try:
        a = socket.socket()
        # a small window (before connect): what A's socket takes is the
        # server's send buffer, ~4 MB here, less than either file
        a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        a.settimeout(10)
        a.connect(("127.0.0.1", srv.port))
        try:
            a.sendall(f"GET /{big} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            time.sleep(0.5)  # the server fills A's socket buffers meanwhile
            with HttpClient(srv.port, timeout=B_TIMEOUT) as b:
                r = b.get("f20480.bin")
                assert r.sha256 == sha["f20480.bin"]
        finally:
            a.close()
    finally:
        srv.check_stopped()
    if kind == "nginx" and mode != "plain" and size == "64m":
        # the way out: nginx's next sendfile on A got EAGAIN (its bytes parked)
        counts = [
            json.loads(p.read_text()).get("eagain_parked", 0)
            for p in tmp_path.glob("stats.json*")
            if not p.name.endswith(".tmp") and ".tmp." not in p.name
        ]
        assert sum(counts) >= 1, counts
