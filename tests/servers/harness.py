"""Real servers under `esca run`: docroot, configs, start/stop, clients, wrk.

Everything binds 127.0.0.1 and lives in the test's temporary directory.  A
server is started as a child of the test (directly for the "plain" control,
or through `esca run --executor E --stats PATH --`) and stopped by its pid.

The servers themselves (docroot, generated configs, start/stop by pid) and
wrk's parser are `pyesca.bench`'s, which `esca bench` uses too; this module
adds the test modes, the asyncio server, HTTP clients and the test bodies.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import conftest  # tests/conftest.py: the executors tested

from pyesca.bench import servers as _servers
from pyesca.bench.servers import Docroot as Docroot
from pyesca.bench.servers import Server as Server
from pyesca.bench.servers import ServerError as ServerError
from pyesca.bench.servers import esca_command as esca_command
from pyesca.bench.servers import free_port as free_port
from pyesca.bench.servers import start_on_free_port
from pyesca.bench.wrk import WrkResult as WrkResult
from pyesca.bench.wrk import parse_wrk as parse_wrk
from pyesca.bench.wrk import run_wrk as _run_wrk
from pyesca.bench.wrk import wrk_path as wrk_path
from pyesca.stats import format_text
from pyesca.stats import load as load_stats

HERE = Path(__file__).resolve().parent
ASYNCIO_SERVER = _servers.ASYNCIO_SERVER  # src/pyesca/bench/asyncio_server.py

# name -> size of the files of the docroot
FILES: dict[str, int] = {
    "empty.bin": 0,
    "one.bin": 1,
    "a100.html": 100,
    "a20.html": 20 << 10,
    "m1.bin": 1 << 20,
    "m64.bin": 64 << 20,
}
SMALL = ("empty.bin", "one.bin", "a100.html", "a20.html", "m1.bin")
BIG = "m64.bin"

MODES = tuple(conftest.MODES)  # "plain", then every executor

# An upper bound that only catches hangs; the tests assert no timings.
IO_TIMEOUT = 30.0


def make_docroot(path: Path) -> Docroot:
    """The files of FILES: deterministic text for .html, random bytes for .bin."""
    return _servers.make_docroot(path, FILES)


def asyncio_cmd(docroot: Path, port: int, workdir: Path) -> list[str]:
    return [sys.executable, str(ASYNCIO_SERVER), "--root", str(docroot), "--port", str(port)]


# kind -> config generator (docroot, port, workdir) -> argv
SERVERS: dict[str, Callable[..., list[str]]] = {
    **_servers.SERVERS,
    "asyncio": asyncio_cmd,
}


def stats_file(mode: str, workdir: Path) -> Path | None:
    return workdir / "esca-stats.json" if mode != "plain" else None


def under_esca(mode: str, cmd: list[str], workdir: Path, env: Sequence[str] = ()) -> list[str]:
    """cmd as it is ("plain"), or under `esca run --executor MODE --stats
    WORKDIR/esca-stats.json`; with env (VAR=V) set for it."""
    stats = stats_file(mode, workdir)
    if stats is not None:
        cmd = [*esca_command(), "run", "--executor", mode, "--stats", str(stats), "--", *cmd]
    return ["env", *env, *cmd] if env else cmd


def server_argv(kind: str, mode: str, docroot: Path, port: int, workdir: Path) -> list[str]:
    return under_esca(mode, SERVERS[kind](docroot, port, workdir), workdir)


@contextmanager
def started(
    kind: str,
    mode: str,
    workdir: Path,
    cmd_for_port: Callable[[int], list[str]],
    env: Sequence[str] = (),
) -> Iterator[Server]:
    """A server (cmd_for_port(port): its command as it is) started on a free
    port in `mode` (under_esca); stopped by its pid (and checked: a crash or
    a hang at SIGTERM fails) on leaving the block."""
    srv = start_on_free_port(
        kind,
        mode,
        workdir,
        lambda port: under_esca(mode, cmd_for_port(port), workdir, env),
        stats_file(mode, workdir),
    )
    try:
        yield srv
    except BaseException:
        srv.stop()
        raise
    srv.check_stopped()


@contextmanager
def running(kind: str, mode: str, docroot: Path, workdir: Path) -> Iterator[Server]:
    """A started web server; stopped (and checked) on leaving the block."""
    with started(kind, mode, workdir, lambda port: SERVERS[kind](docroot, port, workdir)) as srv:
        yield srv


# ---------------------------------------------------------------- clients


class BufferedClient:
    """A TCP connection to 127.0.0.1:port and a buffer of bytes read ahead
    (the Redis and memcached tests' protocol clients build on it)."""

    def __init__(self, port: int, timeout: float = IO_TIMEOUT) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = bytearray()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()




class HttpError(Exception):
    pass


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


class HttpClient:
    """HTTP/1.1 over one keep-alive connection, on a raw socket.

    Bodies are read exactly by Content-Length (chunked is refused: the
    servers under test send static files)."""

    def __init__(
        self,
        port: int,
        *,
        rcvbuf: int | None = None,
        timeout: float = IO_TIMEOUT,
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the window is small from the start
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buf = bytearray()

    def close(self) -> None:
        self.sock.close()

    def reset(self) -> None:
        """Close with RST (SO_LINGER 0), unread data and all."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_request(self, path: str) -> None:
        req = f"GET /{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: pyesca-test\r\n\r\n"
        self.sock.sendall(req.encode())

    def _fill(self, n: int = 1 << 16) -> None:
        c = self.sock.recv(n)
        if not c:
            raise HttpError(f"connection closed by the server ({len(self.buf)} bytes buffered)")
        self.buf += c

    def read_head(self) -> tuple[int, dict[str, str]]:
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            if len(self.buf) > 1 << 16:
                raise HttpError("response head too long")
            self._fill()
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[: end + 4]
        status_line, *lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HttpError(f"bad status line {status_line!r}")
        headers: dict[str, str] = {}
        for line in lines:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if "chunked" in headers.get("transfer-encoding", ""):
            raise HttpError("chunked response")
        if "content-length" not in headers:
            raise HttpError(f"no Content-Length in {head!r}")
        return int(parts[1]), headers

    def read_body(
        self,
        length: int,
        *,
        chunk: int = 1 << 16,
        pause: float = 0.0,
        pause_every: int = 1,
        limit: int | None = None,
    ) -> bytes:
        """length bytes (or the first `limit`): recv(chunk), sleeping `pause`
        every `pause_every` reads."""
        want = length if limit is None else min(limit, length)
        out = bytearray(self.buf[:want])
        del self.buf[:want]
        reads = 0
        while len(out) < want:
            c = self.sock.recv(min(chunk, want - len(out)))
            if not c:
                raise HttpError(f"connection closed after {len(out)} of {length} body bytes")
            out += c
            reads += 1
            if pause and reads % pause_every == 0:
                time.sleep(pause)
        return bytes(out)

    def get(self, path: str, **read: float | int) -> Response:
        self.send_request(path)
        status, headers = self.read_head()
        body = self.read_body(int(headers["content-length"]), **read)  # type: ignore[arg-type]
        return Response(status, headers, body)


def check_response(r: Response, docroot: Docroot, name: str) -> None:
    assert r.status == 200, f"{name}: status {r.status}"
    assert len(r.body) == docroot.sizes[name], f"{name}: {len(r.body)} bytes"
    assert r.sha256 == docroot.sha256[name], f"{name}: body differs"


def fetch_all(port: int, docroot: Docroot, names: Sequence[str], rounds: int = 2) -> None:
    """Every file, `rounds` times, on one keep-alive connection; then pipelined."""
    with HttpClient(port) as c:
        for _ in range(rounds):
            for name in names:
                check_response(c.get(name), docroot, name)
        # pipelined: all requests first, then the responses in order
        for name in names:
            c.send_request(name)
        for name in names:
            status, headers = c.read_head()
            body = c.read_body(int(headers["content-length"]))
            check_response(Response(status, headers, body), docroot, name)


def run_threads(fns: Sequence[Callable[[], None]], timeout: float = 60.0) -> None:
    """Run each fn in a thread; re-raise the first failure."""
    errors: list[BaseException] = []

    def wrap(fn: Callable[[], None]) -> Callable[[], None]:
        def go() -> None:
            try:
                fn()
            except BaseException as exc:  # reported below
                errors.append(exc)

        return go

    threads = [threading.Thread(target=wrap(fn), daemon=True) for fn in fns]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        raise AssertionError(f"client threads still running after {timeout}s")
    if errors:
        raise errors[0]


# ---------------------------------------------------------------- wrk


def run_wrk(url: str, *, threads: int = 4, conns: int = 50, seconds: int = 3) -> WrkResult:
    assert wrk_path(), "wrk not installed (tools/deps.sh installs it)"
    return _run_wrk(url, threads=threads, connections=conns, seconds=seconds)



def esca_stats_json(path: Path) -> dict[str, Any]:
    """`esca stats --json PATH`, as the command line prints it."""
    import json

    p = subprocess.run(
        [*esca_command(), "stats", "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    return dict(json.loads(p.stdout))


# ---------------------------------------------------------------- test bodies
# Shared by test_lighttpd.py, test_nginx.py and test_asyncio.py.


def check_every_file(srv: Server, docroot: Docroot) -> None:
    """Every file byte-exact over keep-alive connections, two at once."""
    run_threads(
        [
            lambda: fetch_all(srv.port, docroot, [*SMALL, BIG], rounds=1),
            lambda: fetch_all(srv.port, docroot, SMALL, rounds=3),
        ]
    )


def check_slow_client(srv: Server, docroot: Docroot) -> None:
    """A client with a small receive buffer, reading small chunks with
    pauses, gets every byte: 1 MiB, then 64 MiB, on one connection."""
    with HttpClient(srv.port, rcvbuf=4096) as c:
        r = c.get("m1.bin", chunk=1024, pause=0.002, pause_every=4)
        check_response(r, docroot, "m1.bin")
        check_response(c.get("a20.html"), docroot, "a20.html")
    with HttpClient(srv.port, rcvbuf=32 << 10) as c:
        start = time.monotonic()
        r = c.get(BIG, chunk=16 << 10, pause=0.001, pause_every=32)
        took = time.monotonic() - start
        check_response(r, docroot, BIG)
        # a stall guard, not a timing assertion: this takes ~1-3 s when it works
        assert took < 20, f"64 MiB to a slow client took {took:.1f}s"
        check_response(c.get("a100.html"), docroot, "a100.html")


def check_resets(srv: Server, docroot: Docroot, resetters: int = 4, rounds: int = 3) -> None:
    """Clients that reset mid-response (SO_LINGER 0 after part of 64 MiB)
    while others fetch: the others get everything intact, and the server
    keeps serving afterwards."""

    def resetter(i: int) -> Callable[[], None]:
        def go() -> None:
            for k in range(rounds):
                c = HttpClient(srv.port)
                try:
                    c.send_request(BIG)
                    status, headers = c.read_head()
                    assert status == 200
                    c.read_body(int(headers["content-length"]), limit=(64 << 10) * (1 + i + k))
                finally:
                    c.reset()

        return go

    def fetch_big() -> None:
        with HttpClient(srv.port) as c:
            check_response(c.get(BIG), docroot, BIG)

    run_threads(
        [
            *(resetter(i) for i in range(resetters)),
            lambda: fetch_all(srv.port, docroot, SMALL, rounds=3),
            fetch_big,
        ]
    )
    fetch_all(srv.port, docroot, SMALL, rounds=1)


def check_deferred(srv: Server, *calls: str) -> None:
    """Under esca (a no-op for the plain control): stop the server, then the
    stats of all its processes (nginx's workers write PATH.<pid>) say its
    executor was the mode's and deferred each of `calls` (the replies: the
    test above proved the bytes right, this proves they went out deferred).
    Fails in pass-through (ESCA_DISABLE=1 defers nothing)."""
    if srv.stats is None:
        return
    srv.check_stopped()
    report = load_stats(srv.stats)
    execs = {p.executor for p in report.processes}
    assert execs == {srv.mode}, (execs, [p.fallback_reason for p in report.processes])
    t = report.total
    got = {c: t.syscalls[c].deferred for c in calls}
    assert all(got.values()), (srv.kind, srv.mode, got, format_text(report))
    # every entry counted on its fd and given back once (a count given back
    # at zero was lever compose's uncounted cork: tests/preload/test_counts.py)
    assert t.fd_count_underflows == 0, (srv.kind, srv.mode, t.fd_count_underflows)


def check_wrk(srv: Server, docroot: Docroot, seconds: int = 3) -> dict[str, Any] | None:
    """wrk on a20.html: no socket errors, no non-2xx; the server is then
    stopped and, under esca, `esca stats --json` (its "total") returned."""
    res = run_wrk(f"{srv.url}/a20.html", seconds=seconds)
    assert res.requests > 0, res.output
    assert res.socket_error_total == 0, res.output
    assert res.non_2xx == 0, res.output
    fetch_all(srv.port, docroot, ["a20.html"], rounds=1)
    srv.check_stopped()
    if srv.stats is None:
        return None
    total = esca_stats_json(srv.stats)["total"]
    assert isinstance(total, dict)
    assert total.get("fd_count_underflows") == 0, total.get("fd_count_underflows")
    return total
