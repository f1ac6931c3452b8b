"""pyesca.loadcheck itself: it finds a wrong body and a cut-off response.

A small threaded HTTP server (here, in the test) serves the pattern files,
except that it flips one byte of one file, or stops halfway through a body
and closes; loadcheck must count the mismatch / the error and exit 1, and
count a clean run as clean (exit 0).
"""

from __future__ import annotations

import json
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyesca import loadcheck

pytestmark = pytest.mark.reliability

FILES = {0: 1.0, 100: 1.0, 4097: 1.0, 65537: 1.0}


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        while True:
            line = self.rfile.readline()
            if not line:
                return
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            name = line.split()[1].decode().lstrip("/")
            data = (self.server.root / name).read_bytes()
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            if self.server.fault == "flip" and name == "f4097.bin":
                data = data[:1000] + bytes([data[1000] ^ 1]) + data[1001:]
            if self.server.fault == "cut" and name == "f65537.bin":
                self.wfile.write(head + data[: len(data) // 2])
                return
            self.wfile.write(head + data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, root: Path, fault: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.fault = fault


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lc-small")
    loadcheck.make_docroot(path, FILES)
    return path


@pytest.fixture(params=["none", "flip", "cut"])
def served(request: pytest.FixtureRequest, root: Path) -> Iterator[tuple[str, int]]:
    srv = _Server(root, str(request.param))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield str(request.param), int(srv.server_address[1])
    srv.shutdown()
    srv.server_close()


def test_loadcheck_counts_what_is_wrong(served: tuple[str, int], root: Path) -> None:
    fault, port = served
    p = subprocess.run(
        [sys.executable, "-m", "pyesca.loadcheck", f"http://127.0.0.1:{port}",
         "-c", "8", "-d", "1", "--progress", "0", "--manifest", str(root / "loadcheck.json")],
        capture_output=True, text=True, timeout=60, check=False,
    )
    summary = json.loads(p.stdout)
    assert summary["requests"] > 0, summary
    if fault == "none":
        assert (p.returncode, summary["mismatches"], summary["error_total"]) == (0, 0, 0), summary
    elif fault == "flip":
        assert p.returncode == 1 and summary["mismatches"] > 0, summary
        assert {m["name"] for m in summary["mismatch_samples"]} == {"f4097.bin"}
        assert summary["error_total"] == 0, summary
    else:
        assert p.returncode == 1 and summary["errors"]["eof_mid_response"] > 0, summary
        assert summary["mismatches"] == 0, summary


def test_loadcheck_usage_errors(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for args, msg in (
        ([], "give a URL"),
        (["ftp://x"], "only http://"),
        ([f"http://127.0.0.1:{port}"], "cannot fetch loadcheck.json"),
        (["http://127.0.0.1:1", "--manifest", str(tmp_path / "none.json")], "none.json"),
    ):
        p = subprocess.run(
            [sys.executable, "-m", "pyesca.loadcheck", *args],
            capture_output=True, text=True, timeout=30, check=False,
        )
        assert p.returncode == 2 and msg in p.stderr, (args, p.stderr)
