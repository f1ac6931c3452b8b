"""memcached under esca run (and plain, the control): replies byte-exact from
its worker threads, and a client that stops reading.

memcached is multi-threaded: a dispatcher thread accepts and hands each
connection to a libevent worker thread through a pipe, so each worker's
table defers its own replies (sendmsg).  Each test starts memcached (Debian's,
tools/deps.sh) on a free port of 127.0.0.1 in the test's mode
(tests/servers/conftest.py), talks the text protocol over raw sockets, and
stops it by its pid (SIGTERM) at the end, where a hang fails the test.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .harness import BufferedClient, esca_stats_json, run_threads, started

pytestmark = pytest.mark.skipif(
    shutil.which("memcached") is None, reason="memcached not installed (tools/deps.sh)"
)


@contextmanager
def memcached(mode: str, tmp: Path, *args: str) -> Iterator[tuple[int, Path | None]]:
    """(port, stats file or None) of a running memcached, stopped by its pid
    on leaving, where a crash or a hang fails the test."""

    def argv(port: int) -> list[str]:
        cmd = ["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-I", "2m", *args]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]  # memcached refuses to run as root without it
        return cmd

    with started("memcached", mode, tmp, argv) as srv:
        yield srv.port, srv.stats


class Client(BufferedClient):
    def until(self, end: bytes, chunk: int = 1 << 16, pause: float = 0.0) -> bytes:
        """Bytes up to and with `end`, reading `chunk` at a time."""
        while (i := self.buf.find(end)) < 0:
            data = self.sock.recv(chunk)
            if not data:
                raise EOFError(f"memcached closed the connection ({len(self.buf)} B unread)")
            self.buf += data
            if pause:
                time.sleep(pause)
        out = bytes(self.buf[: i + len(end)])
        del self.buf[: i + len(end)]
        return out

    def set(self, key: bytes, value: bytes) -> None:
        self.sock.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value))
        assert self.until(b"\r\n") == b"STORED\r\n"


def reply(values: dict[bytes, bytes], keys: list[bytes]) -> bytes:
    """What `get k1 k2 ...` answers."""
    return (
        b"".join(b"VALUE %s 0 %d\r\n%s\r\n" % (k, len(values[k]), values[k]) for k in keys)
        + b"END\r\n"
    )


def deferred_sends(stats: Path) -> int:
    total = esca_stats_json(stats)["total"]
    return sum(total["syscalls"][c]["deferred"] for c in ("sendmsg", "write", "writev"))


def test_values_byte_exact(server_mode: str, tmp_path: Path) -> None:
    """Eight clients (spread over memcached's 4 worker threads) store values of
    1 B to 512 KiB under keys of their own, then pipeline multi-gets of them
    and `mn`s, one client reading slowly: every reply's bytes, to its own
    client, in order."""
    sizes = [1, 100, 20 << 10, 512 << 10]
    with memcached(server_mode, tmp_path, "-t", "4") as (port, stats):

        def client(n: int) -> None:
            values = {b"c%d-k%d" % (n, i): secrets.token_bytes(s) for i, s in enumerate(sizes)}
            with Client(port) as c:
                for k, v in values.items():
                    c.set(k, v)
                keys = list(values)
                want = b""
                for i in range(12):
                    ask = keys[i % 4 :] + keys[: i % 4]
                    c.sock.sendall(b"get %s\r\nmn\r\n" % b" ".join(ask))
                    want += reply(values, ask) + b"MN\r\n"
                slow = n == 0
                got = b"".join(
                    c.until(b"MN\r\n", chunk=4096 if slow else 1 << 16,
                            pause=0.0005 if slow else 0.0)
                    for _ in range(12)
                )  # fmt: skip
                assert got == want, f"client {n}: {len(got)} B, {len(want)} B asked"

        run_threads([lambda n=n: client(n) for n in range(8)], timeout=120)
    if stats is not None:
        assert deferred_sends(stats) > 0, "no reply was deferred: the test tests nothing"


def test_client_that_stops_reading_holds_no_one_else(server_mode: str, tmp_path: Path) -> None:
    """One worker thread (-t 1) serves both: a client asks for 64 values of
    1 MiB and stops reading; the other's 200 round trips are answered
    meanwhile (each within 2 s: the bound only catches a stall); then the
    first reads everything, byte-exact."""
    value = secrets.token_bytes(1 << 20)
    with memcached(server_mode, tmp_path, "-t", "1") as (port, stats):
        with Client(port) as a, Client(port) as b:
            a.set(b"v", value)
            a.sock.sendall(b"get v\r\n" * 64)
            time.sleep(0.3)  # memcached writes what the socket takes, the rest waits
            worst = 0.0
            for i in range(200):
                t0 = time.monotonic()
                b.set(b"k%d" % i, b"%d" % i)
                b.sock.sendall(b"get k%d\r\n" % i)
                assert b.until(b"END\r\n") == reply({b"k%d" % i: b"%d" % i}, [b"k%d" % i])
                worst = max(worst, time.monotonic() - t0)
            assert worst < 2.0, f"a request waited {worst:.2f} s behind a client not reading"
            one = reply({b"v": value}, [b"v"])
            for i in range(64):
                assert a.until(b"END\r\n") == one, f"reply {i} differs"
    if stats is not None:
        assert deferred_sends(stats) > 0
