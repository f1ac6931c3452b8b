"""Redis under esca run (and plain, the control): replies byte-exact, a client
that stops reading, and Redis's I/O threads (session 18's audit).

Each test starts redis-server (Debian's, tools/deps.sh) on a free port of
127.0.0.1 with no persistence, in the test's mode (tests/servers/conftest.py:
"plain", or `esca run --executor E`), talks RESP over raw sockets, and stops
it by its pid (SIGTERM) at the end, where a hang or a crash fails the test.
"""

from __future__ import annotations

import secrets
import shutil
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .harness import BufferedClient, Server, esca_stats_json, run_threads, started

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server not installed (tools/deps.sh)"
)


class Redis:
    def __init__(self, srv: Server) -> None:
        self.srv, self.port, self.stats = srv, srv.port, srv.stats

    def connect(self) -> Client:
        return Client(self.port)


@contextmanager
def redis(mode: str, tmp: Path, *args: str, env: tuple[str, ...] = ()) -> Iterator[Redis]:
    """A redis-server in `mode`, with `env` (VAR=V) set for it; stopped by
    its pid on leaving, where a crash or a hang fails the test."""

    def argv(port: int) -> list[str]:
        cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(tmp), "--logfile", str(tmp / "redis.log"),
               *args]  # fmt: skip
        return cmd

    with started("redis", mode, tmp, argv, env) as srv:
        yield Redis(srv)


def command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


class Client(BufferedClient):
    """A RESP connection: requests written whole, replies parsed from a buffer."""

    def send(self, *args: bytes) -> None:
        self.sock.sendall(command(*args))

    def _fill(self, chunk: int = 1 << 16) -> None:
        data = self.sock.recv(chunk)
        if not data:
            raise EOFError("redis closed the connection")
        self.buf += data

    def _line(self) -> bytes:
        while (i := self.buf.find(b"\r\n")) < 0:
            self._fill()
        line = bytes(self.buf[:i])
        del self.buf[: i + 2]
        return line

    def reply(self, chunk: int = 1 << 16, pause: float = 0.0) -> bytes | None:
        """One reply: a status or error line as it is, a bulk string's bytes."""
        line = self._line()
        if line[:1] != b"$":
            return line
        n = int(line[1:])
        if n < 0:
            return None
        while len(self.buf) < n + 2:
            self._fill(chunk)
            if pause:
                time.sleep(pause)
        assert self.buf[n : n + 2] == b"\r\n"
        body = bytes(self.buf[:n])
        del self.buf[: n + 2]
        return body

    def call(self, *args: bytes) -> bytes | None:
        self.send(*args)
        return self.reply()


def deferred_writes(srv: Redis) -> int:
    assert srv.stats is not None
    total = esca_stats_json(srv.stats)["total"]
    return sum(total["syscalls"][c]["deferred"] for c in ("write", "writev"))


def test_pipelined_replies_byte_exact(server_mode: str, tmp_path: Path) -> None:
    """Six clients pipeline GETs of 1 MiB, 20 KiB and 100 B values and ECHOs
    of their own tokens, one of them reading slowly: every reply's bytes, in
    order, to its own client."""
    values = {b"big": secrets.token_bytes(1 << 20), b"mid": secrets.token_bytes(20 << 10),
              b"small": secrets.token_bytes(100)}  # fmt: skip
    with redis(server_mode, tmp_path) as srv:
        with srv.connect() as c:
            for k, v in values.items():
                assert c.call(b"SET", k, v) == b"+OK"

        def client(n: int) -> None:
            with srv.connect() as c:
                want = []
                for i in range(40):
                    key = list(values)[(n + i) % 3]
                    token = b"client %d request %d" % (n, i)
                    c.send(b"GET", key)
                    c.send(b"ECHO", token)
                    want += [values[key], token]
                slow = n == 0
                got = [c.reply(chunk=4096 if slow else 1 << 16, pause=0.0005 if slow else 0)
                       for _ in want]  # fmt: skip
                assert got == want, f"client {n}: replies differ"

        run_threads([lambda n=n: client(n) for n in range(6)], timeout=120)
    if srv.stats is not None:
        assert deferred_writes(srv) > 0, "no reply was deferred: the test tests nothing"


def test_client_that_stops_reading_holds_no_one_else(server_mode: str, tmp_path: Path) -> None:
    """A client asks for 64 MiB of replies and stops reading; another's PINGs
    are answered meanwhile (each within 2 s: the bound only catches a stall);
    then the first reads everything, byte-exact."""
    value = secrets.token_bytes(1 << 20)
    with redis(server_mode, tmp_path) as srv:
        with srv.connect() as a, srv.connect() as b:
            assert a.call(b"SET", b"v", value) == b"+OK"
            for _ in range(64):
                a.send(b"GET", b"v")
            time.sleep(0.3)  # Redis writes what the socket takes, the rest waits
            worst = 0.0
            for i in range(200):
                t0 = time.monotonic()
                assert b.call(b"ECHO", b"%d" % i) == b"%d" % i
                worst = max(worst, time.monotonic() - t0)
            assert worst < 2.0, f"a PING waited {worst:.2f} s behind a client not reading"
            for i in range(64):
                assert a.reply() == value, f"reply {i} differs"
    if srv.stats is not None:
        assert deferred_writes(srv) > 0


def test_io_thread_replies_come_at_once(server_mode: str, tmp_path: Path) -> None:
    """`--io-threads 2`: Redis's I/O thread writes replies, then spins in user
    space until the next job, reaching no trigger of the library's.  Each of
    its deferred replies waited for the thread's timer shot (2 ms: 14x plain's
    latency); lever adapt now puts a thread aside after two such shots in a
    row (DESIGN.md, "Stepping aside").  The shot is made long here (150 ms),
    so that a reply that waits for it is told from one that does not: plain
    has no slow round of 8 GETs, esca at most the few the I/O thread needs
    to step aside."""
    rounds = 60
    slow_s = 0.1
    with redis(server_mode, tmp_path, "--io-threads", "2", env=("ESCA_FLUSH_US=150000",)) as srv:
        value = secrets.token_bytes(20 << 10)
        with srv.connect() as c:
            assert c.call(b"SET", b"k", value) == b"+OK"
        clients = [srv.connect() for _ in range(8)]
        times = []
        try:
            for _ in range(rounds):
                t0 = time.monotonic()
                for c in clients:
                    c.send(b"GET", b"k")
                for c in clients:
                    assert c.reply() == value
                times.append(time.monotonic() - t0)
            with srv.connect() as c:
                info = c.call(b"INFO", b"stats") or b""
        finally:
            for c in clients:
                c.sock.close()
    threaded = [ln for ln in info.split(b"\r\n") if ln.startswith(b"io_threaded_writes_processed")]
    assert threaded and int(threaded[0].split(b":")[1]) > 0, "Redis's I/O thread wrote nothing"
    slow = sum(t > slow_s for t in times)
    print(f"{server_mode}: median {statistics.median(times) * 1e3:.2f} ms, {slow} rounds over"
          f" {slow_s * 1e3:.0f} ms")  # fmt: skip
    limit = 0 if server_mode == "plain" else 4
    assert slow <= limit, f"{slow} of {rounds} rounds waited for the timer's shot"
