"""A client that does not read must not hold up the server's other clients.

Client A asks for 64 MiB and reads nothing; then client B asks for 20 KiB.
Plainly, lighttpd and nginx (1 worker, so A and B share it) answer B at
once.  Under esca, nginx does not: its deferred sendfile returns the whole
chunk at once, nginx goes on sending, and the next call on A's socket waits
in user space for the parked one (DESIGN.md, "Contract: order"), so the worker's event
loop stopped until A reads.  Now such a call on a non-blocking socket gets
EAGAIN, as from a full socket, and the socket's edge-triggered registration
is re-armed once the parked bytes are out.  The sequential executor runs
each op to completion (it has nothing that parks): there the stall remains
(xfail).
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

STALL_BUG = pytest.mark.xfail(
    strict=True,
    reason="nginx under the sequential executor: a send to a client that does not read"
    " runs to completion inside the flush, so the worker serves nobody else meanwhile",
)


def params() -> list[object]:
    out: list[object] = []
    for kind in ("lighttpd", "nginx"):
        for mode in MODES:
            marks = [STALL_BUG] if kind == "nginx" and mode == "sequential" else []
            out.append(pytest.param(kind, mode, marks=marks, id=f"{kind}-{mode}"))
    return out


@pytest.mark.parametrize(("kind", "mode"), params())
def test_reader_that_stops_does_not_stall_others(
    kind: str, mode: str, tmp_path: Path
) -> None:
    reason = mode_skip_reason(mode)
    if reason:
        pytest.skip(reason)
    docroot = make_docroot(tmp_path / "root")
    files = json.loads((docroot / "loadcheck.json").read_text())["files"]
    sha = {n: f["sha256"] for n, f in files.items()}

    def argv(port: int) -> list[str]:
        opts = {"workers": 1} if kind == "nginx" else {}
        cmd = SERVERS[kind](docroot, port, tmp_path, **opts)
        if mode == "plain":
            return cmd
        return [*esca_command(), "run", "--executor", mode, "--stats", str(stats), "--", *cmd]

    stats = tmp_path / "stats.json"

    srv = start_on_free_port(kind, mode, tmp_path, argv)
    try:
        a = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        try:
            a.sendall(b"GET /f67108864.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.5)  # the server fills A's socket buffers meanwhile
            with HttpClient(srv.port, timeout=B_TIMEOUT) as b:
                r = b.get("f20480.bin")
                assert r.sha256 == sha["f20480.bin"]
        finally:
            a.close()
    finally:
        srv.check_stopped()
    if kind == "nginx" and mode == "uring":
        # the way out: nginx's next sendfile on A got EAGAIN (its bytes parked)
        counts = [
            json.loads(p.read_text()).get("eagain_parked", 0)
            for p in tmp_path.glob("stats.json*")
            if not p.name.endswith(".tmp") and ".tmp." not in p.name
        ]
        assert sum(counts) >= 1, counts
