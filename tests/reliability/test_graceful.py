"""A graceful stop delivers what the server had already taken on.

lighttpd 1.4.69 stops gracefully on SIGINT (SIGTERM is its immediate stop),
nginx on SIGQUIT.  With four 64 MiB responses in flight (each client has
read at least 1 MiB, through a 64 KiB receive buffer) and completed small responses
on the same keep-alive connections, the signal is sent (the clients keep
reading, slowly until then); every in-flight body must then arrive whole,
and the server must exit by itself, cleanly.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest

from servers.conftest import mode_skip_reason
from servers.harness import HttpClient, Response, run_threads

from .rel import make_docroot, running, wait_until

pytestmark = pytest.mark.reliability

GRACEFUL = {"lighttpd": signal.SIGINT, "nginx": signal.SIGQUIT}
BIG = "f67108864.bin"
IN_FLIGHT = 4


@pytest.fixture(scope="module")
def gdocroot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    path = make_docroot(tmp_path_factory.mktemp("graceful-docroot"))
    files = json.loads((path / "loadcheck.json").read_text())["files"]
    return path, {name: f["sha256"] for name, f in files.items()}


@pytest.mark.parametrize("kind", sorted(GRACEFUL))
def test_graceful_stop_delivers(
    kind: str, mode: str, gdocroot: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    reason = mode_skip_reason(mode)
    if reason:
        pytest.skip(reason)
    docroot, sha = gdocroot
    with running(kind, mode, docroot, tmp_path) as srv:
        clients = [HttpClient(srv.port, rcvbuf=64 << 10) for _ in range(IN_FLIGHT)]
        got = [0] * IN_FLIGHT
        bodies: list[Response | None] = [None] * IN_FLIGHT
        signalled = threading.Event()
        at_signal: list[int] = []

        def client(i: int) -> None:
            c = clients[i]
            r = c.get("f20480.bin")  # a completed response first
            assert r.sha256 == sha["f20480.bin"]
            c.send_request(BIG)
            status, headers = c.read_head()
            assert status == 200
            length = int(headers["content-length"])
            body = bytearray()
            # keep reading, slowly, so the response is in flight at the signal
            while len(body) < length:
                body += c.read_body(length - len(body), limit=64 << 10)
                got[i] = len(body)
                if not signalled.is_set():
                    time.sleep(0.005)
            bodies[i] = Response(status, headers, bytes(body))

        def stopper() -> None:
            wait_until(lambda: min(got) >= 1 << 20, 60, "1 MiB of every body")
            at_signal.extend(got)
            srv.proc.send_signal(GRACEFUL[kind])  # type: ignore[union-attr]
            signalled.set()

        try:
            run_threads([*(lambda i=i: client(i) for i in range(IN_FLIGHT)), stopper], 90)
        finally:
            for c in clients:
                c.close()
        # the responses really were in flight when the signal went
        assert at_signal and max(at_signal) < 64 << 20, at_signal
        for i, r in enumerate(bodies):
            assert r is not None
            assert len(r.body) == 64 << 20, f"client {i}: {len(r.body)} bytes"
            assert r.sha256 == sha[BIG], f"client {i}: body differs"
        proc = srv.proc
        assert proc is not None
        wait_until(lambda: proc.poll() is not None, 30, f"{kind} to stop after {GRACEFUL[kind]!r}")
        status = proc.returncode
        problems = srv.problems(status)
        assert not problems, problems
        assert status == 0 or srv.benign_exit(status), f"{kind} exit status {status}"
