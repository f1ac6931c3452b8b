"""A verifying HTTP/1.1 load client: every body checked against its sha256.

    python -m pyesca.loadcheck --make-docroot DIR
    python -m pyesca.loadcheck http://127.0.0.1:8080 --connections 1000 --duration 10
    esca loadcheck ...                      (the same)

`--make-docroot DIR` writes files of mixed sizes (0 B to 64 MiB) whose bytes
are a distinct pattern per file (SHAKE-256 of the file name, so no two files
and no two offsets of one file look alike) and a manifest, `loadcheck.json`
(name -> size, sha256).  A run fetches the manifest from the first URL (or
reads `--manifest PATH`), then keeps `--connections` keep-alive connections
busy for `--duration` seconds, each asking for one file after another, chosen
at random with weights that favour small files.  Every response is checked:
status 200, Content-Length equal to the file's size, and the sha256 of the
body equal to the manifest's; a wrong body (or length) is a *mismatch*.

Counted: requests (completed, verified responses), body bytes, mismatches,
and errors by kind: `connect` (refused or failed), `reset` (ECONNRESET or
EPIPE), `timeout` (no byte for `--timeout` seconds while a response is due),
`eof_mid_response` (the server closed a connection in the middle of a
response), `eof_before_response` (closed with a request outstanding and no
byte of its answer), `protocol` (a malformed or chunked response), `status`
(not 200).  A connection that ends is replaced at once while the run lasts.
At the end the client stops asking, lets the responses in flight finish
(within `--timeout`), and prints a JSON summary on stdout (or `--json PATH`).

Exit status: 0 nothing wrong, 1 mismatches or errors, 2 usage error or no
manifest.  The client is one asyncio process (raw transports, a minimal
parser for Content-Length responses); it raises its own RLIMIT_NOFILE to
the hard limit so that it can hold 1,000+ connections.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import resource
import socket
import sys
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROG = "loadcheck"
MANIFEST = "loadcheck.json"
PATTERN_PREFIX = b"pyesca-loadcheck:"

# The docroot's files: size -> weight of being asked for (small files often,
# the 64 MiB one now and then).
SIZES: dict[int, float] = {
    0: 10.0,
    1: 10.0,
    100: 10.0,
    1460: 10.0,
    4096: 10.0,
    4097: 10.0,
    20 << 10: 10.0,
    (64 << 10) + 1: 6.0,
    256 << 10: 4.0,
    1 << 20: 2.0,
    4 << 20: 0.5,
    16 << 20: 0.1,
    64 << 20: 0.02,
}

ERROR_KINDS = (
    "connect",
    "reset",
    "timeout",
    "eof_mid_response",
    "eof_before_response",
    "protocol",
    "status",
)

MAX_HEAD = 64 << 10


class LoadcheckError(Exception):
    """A usage problem or a missing/invalid manifest (exit status 2)."""


def file_name(size: int) -> str:
    return f"f{size}.bin"


def pattern(name: str, size: int) -> bytes:
    """The bytes of the docroot file `name`: SHAKE-256 of its name, `size` long."""
    if size == 0:
        return b""
    return hashlib.shake_256(PATTERN_PREFIX + name.encode()).digest(size)


@dataclass(frozen=True)
class FileInfo:
    name: str
    size: int
    sha256: str
    weight: float


def make_docroot(path: Path, sizes: Mapping[int, float] = SIZES) -> dict[str, FileInfo]:
    """Write the pattern files and the manifest into `path`."""
    path.mkdir(parents=True, exist_ok=True)
    files: dict[str, FileInfo] = {}
    for size, weight in sizes.items():
        name = file_name(size)
        data = pattern(name, size)
        (path / name).write_bytes(data)
        files[name] = FileInfo(name, size, hashlib.sha256(data).hexdigest(), weight)
    manifest = {
        "pattern": "shake256(" + PATTERN_PREFIX.decode() + "NAME)",
        "files": {
            f.name: {"size": f.size, "sha256": f.sha256, "weight": f.weight}
            for f in files.values()
        },
    }
    (path / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return files


def parse_manifest(text: str) -> dict[str, FileInfo]:
    try:
        doc = json.loads(text)
        files = {
            name: FileInfo(name, int(v["size"]), str(v["sha256"]), float(v.get("weight", 1.0)))
            for name, v in doc["files"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LoadcheckError(f"invalid manifest: {exc}") from None
    if not files:
        raise LoadcheckError("the manifest lists no files")
    return files


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    prefix: str  # path prefix, no trailing slash

    @classmethod
    def parse(cls, url: str) -> Target:
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            raise LoadcheckError(f"{url}: only http://HOST[:PORT][/PREFIX] URLs are understood")
        try:
            port = u.port or 80
        except ValueError:
            raise LoadcheckError(f"{url}: bad port") from None
        return cls(u.hostname, port, u.path.rstrip("/"))

    def request(self, name: str) -> bytes:
        return (
            f"GET {self.prefix}/{name} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "User-Agent: pyesca-loadcheck\r\n\r\n"
        ).encode()


def fetch_manifest(target: Target, timeout: float) -> dict[str, FileInfo]:
    """GET PREFIX/loadcheck.json over a plain blocking socket."""
    try:
        with socket.create_connection((target.host, target.port), timeout=timeout) as s:
            s.sendall(
                (
                    f"GET {target.prefix}/{MANIFEST} HTTP/1.1\r\nHost: {target.host}\r\n"
                    "Connection: close\r\n\r\n"
                ).encode()
            )
            data = bytearray()
            while c := s.recv(1 << 16):
                data += c
    except OSError as exc:
        raise LoadcheckError(f"cannot fetch {MANIFEST} from {target.host}:{target.port}: {exc}")
    head, sep, body = bytes(data).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if not sep or b" 200 " not in status + b" ":
        raise LoadcheckError(
            f"{target.host}:{target.port}{target.prefix}/{MANIFEST}: "
            f"{status.decode('latin-1') or 'no response'} (make one with --make-docroot)"
        )
    return parse_manifest(body.decode("utf-8", "replace"))


@dataclass
class Mismatch:
    name: str
    size: int
    got: str  # the body's sha256, or what else was wrong


@dataclass
class Totals:
    requests: int = 0
    sent: int = 0
    bytes: int = 0
    connections_opened: int = 0
    mismatches: int = 0
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_KINDS, 0))
    per_file: dict[str, int] = field(default_factory=dict)
    mismatch_samples: list[Mismatch] = field(default_factory=list)

    @property
    def error_total(self) -> int:
        return sum(self.errors.values())


# parser states
_IDLE, _HEAD, _BODY = 0, 1, 2


class _Conn(asyncio.Protocol):
    """One keep-alive connection: request, verify, request again."""

    def __init__(self, run: _Run, target: Target) -> None:
        self.run = run
        self.target = target
        self.transport: asyncio.Transport | None = None
        self.state = _IDLE
        self.buf = bytearray()
        self.file: FileInfo | None = None
        self.remaining = 0
        self.got_any = False
        self.hasher: Any = None
        self.last_progress = time.monotonic()
        self.failed = False
        self.closed = asyncio.get_running_loop().create_future()

    # -- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.run.totals.connections_opened += 1
        self._next()

    def data_received(self, data: bytes) -> None:
        self.last_progress = time.monotonic()
        view = memoryview(data)
        while view and not self.failed:
            if self.state == _IDLE:
                self._fail("protocol")  # bytes nobody asked for
                return
            self.got_any = True
            if self.state == _HEAD:
                self.buf += view
                view = view[len(view) :]
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buf) > MAX_HEAD:
                        self._fail("protocol")
                    return
                rest = memoryview(bytes(self.buf[end + 4 :]))
                if not self._head(bytes(self.buf[:end])):
                    return
                self.buf.clear()
                view = rest
                if self.remaining == 0:
                    self._done()
                continue
            take = view[: self.remaining]
            self.hasher.update(take)
            self.remaining -= len(take)
            view = view[len(take) :]
            if self.remaining == 0:
                self._done()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.failed and self.state != _IDLE:
            if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
                self._count("reset")
            elif self.state == _BODY or (self.state == _HEAD and self.got_any):
                self._count("eof_mid_response")
            else:
                self._count("eof_before_response")
        self.state = _IDLE
        if not self.closed.done():
            self.closed.set_result(None)

    # -- the request cycle

    def _next(self) -> None:
        assert self.transport is not None
        if self.run.stopping:
            self.transport.close()
            return
        f = self.run.pick()
        self.file = f
        self.state = _HEAD
        self.got_any = False
        self.remaining = 0
        self.hasher = hashlib.sha256()
        self.last_progress = time.monotonic()
        self.run.totals.sent += 1
        self.transport.write(self.target.request(f.name))

    def _head(self, head: bytes) -> bool:
        assert self.file is not None
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            self._fail("protocol")
            return False
        length = None
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                try:
                    length = int(v.strip())
                except ValueError:
                    pass
            elif k == b"transfer-encoding" and b"chunked" in v.lower():
                self._fail("protocol")
                return False
        if parts[1] != b"200":
            self._fail("status")
            return False
        if length is None:
            self._fail("protocol")
            return False
        if length != self.file.size:
            self._mismatch(f"Content-Length {length}")
            return False
        self.remaining = length
        self.state = _BODY
        return True

    def _done(self) -> None:
        f = self.file
        assert f is not None
        got = self.hasher.hexdigest()
        if got != f.sha256:
            self._mismatch(got)
            return
        t = self.run.totals
        t.requests += 1
        t.bytes += f.size
        t.per_file[f.name] = t.per_file.get(f.name, 0) + 1
        self.state = _IDLE
        self._next()

    def _count(self, kind: str) -> None:
        self.run.totals.errors[kind] += 1

    def _fail(self, kind: str) -> None:
        self.failed = True
        self._count(kind)
        if self.transport is not None:
            self.transport.abort()

    def _mismatch(self, got: str) -> None:
        assert self.file is not None
        t = self.run.totals
        t.mismatches += 1
        if len(t.mismatch_samples) < 20:
            t.mismatch_samples.append(Mismatch(self.file.name, self.file.size, got))
        self.failed = True
        if self.transport is not None:
            self.transport.abort()

    def timed_out(self, now: float, limit: float) -> bool:
        return self.state != _IDLE and not self.failed and now - self.last_progress > limit


@dataclass
class Options:
    urls: list[str]
    connections: int = 100
    duration: float = 10.0
    timeout: float = 30.0
    connect_burst: int = 200
    files: list[str] | None = None
    seed: int | None = None
    progress: float = 5.0
    manifest: Path | None = None
    rcvbuf: int | None = None


class _Run:
    def __init__(self, opts: Options, files: dict[str, FileInfo]) -> None:
        self.opts = opts
        self.files = files
        names = opts.files or sorted(files, key=lambda n: files[n].size)
        for n in names:
            if n not in files:
                raise LoadcheckError(f"{n}: not in the manifest")
        self.choice = [files[n] for n in names]
        self.weights = [max(files[n].weight, 0.0) for n in names]
        if sum(self.weights) <= 0:
            self.weights = [1.0] * len(names)
        self.rng = random.Random(opts.seed)
        self.targets = [Target.parse(u) for u in opts.urls]
        self.totals = Totals()
        self.stopping = False
        self.conns: set[_Conn] = set()
        self.pattern_ok = True

    def pick(self) -> FileInfo:
        return self.rng.choices(self.choice, self.weights)[0]

    async def _one(self, target: Target, connect_gate: asyncio.Semaphore) -> None:
        loop = asyncio.get_running_loop()
        while not self.stopping:
            async with connect_gate:
                try:
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    sock.setblocking(False)
                    if self.opts.rcvbuf:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.opts.rcvbuf)
                    try:
                        await asyncio.wait_for(
                            loop.sock_connect(sock, (target.host, target.port)),
                            self.opts.timeout,
                        )
                    except BaseException:
                        sock.close()
                        raise
                    _, conn = await loop.create_connection(
                        lambda: _Conn(self, target), sock=sock
                    )
                except (OSError, asyncio.TimeoutError):
                    self.totals.errors["connect"] += 1
                    await asyncio.sleep(0.05)
                    continue
            self.conns.add(conn)
            try:
                await conn.closed
            finally:
                self.conns.discard(conn)

    async def _watch(self, start: float) -> None:
        """Abort stalled connections; print progress."""
        next_progress = start + self.opts.progress if self.opts.progress > 0 else None
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for c in list(self.conns):
                if c.timed_out(now, self.opts.timeout):
                    c._fail("timeout")
            if next_progress is not None and now >= next_progress:
                next_progress += self.opts.progress
                t = self.totals
                print(
                    f"{PROG}: {now - start:5.1f}s {t.requests} requests, "
                    f"{t.bytes / 1e6:.1f} MB, {t.mismatches} mismatches, "
                    f"{t.error_total} errors, {len(self.conns)} open",
                    file=sys.stderr,
                    flush=True,
                )

    async def main(self) -> dict[str, Any]:
        start = time.monotonic()
        gate = asyncio.Semaphore(max(1, self.opts.connect_burst))
        workers = [
            asyncio.create_task(self._one(self.targets[i % len(self.targets)], gate))
            for i in range(self.opts.connections)
        ]
        watch = asyncio.create_task(self._watch(start))
        await asyncio.sleep(self.opts.duration)
        self.stopping = True
        measured = time.monotonic() - start
        # the responses in flight finish (or time out in the watcher)
        for c in list(self.conns):
            if c.state == _IDLE and c.transport is not None:
                c.transport.close()
        done, pending = await asyncio.wait(workers, timeout=self.opts.timeout + 5)
        for w in pending:  # connecting: abandon
            w.cancel()
        for c in list(self.conns):
            if c.state != _IDLE and not c.failed:
                c._fail("timeout")
        await asyncio.gather(*pending, return_exceptions=True)
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        for w in done:
            if not w.cancelled() and w.exception() is not None:
                raise w.exception()  # type: ignore[misc]
        return self.summary(measured, time.monotonic() - start)

    def summary(self, measured: float, elapsed: float) -> dict[str, Any]:
        t = self.totals
        return {
            "urls": self.opts.urls,
            "connections": self.opts.connections,
            "duration_s": round(measured, 3),
            "elapsed_s": round(elapsed, 3),
            "requests": t.requests,
            "requests_sent": t.sent,
            "bytes": t.bytes,
            "requests_per_s": round(t.requests / measured, 1) if measured else 0.0,
            "mbytes_per_s": round(t.bytes / measured / 1e6, 1) if measured else 0.0,
            "connections_opened": t.connections_opened,
            "mismatches": t.mismatches,
            "errors": dict(t.errors),
            "error_total": t.error_total,
            "resets": t.errors["reset"],
            "timeouts": t.errors["timeout"],
            "per_file": dict(sorted(t.per_file.items())),
            "mismatch_samples": [m.__dict__ for m in t.mismatch_samples],
            "ok": t.mismatches == 0 and t.error_total == 0,
        }


def raise_nofile(want: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit towards `want` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return int(soft)


def run(opts: Options) -> dict[str, Any]:
    """Run the load; the summary (see the module docstring)."""
    if not opts.urls:
        raise LoadcheckError("no URL given")
    if opts.connections < 1:
        raise LoadcheckError("--connections must be at least 1")
    if opts.duration <= 0 or opts.timeout <= 0:
        raise LoadcheckError("--duration and --timeout must be positive")
    targets = [Target.parse(u) for u in opts.urls]
    limit = raise_nofile(opts.connections + 64)
    if limit < opts.connections + 16:
        raise LoadcheckError(
            f"RLIMIT_NOFILE is {limit}: too low for {opts.connections} connections"
            " (raise the hard limit: ulimit -Hn)"
        )
    if opts.manifest is not None:
        try:
            files = parse_manifest(opts.manifest.read_text())
        except OSError as exc:
            raise LoadcheckError(f"{opts.manifest}: {exc.strerror}") from None
    else:
        files = fetch_manifest(targets[0], opts.timeout)
    r = _Run(opts, files)
    return asyncio.run(r.main())


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=(
            "A verifying HTTP/1.1 load client: keep-alive connections fetch files of mixed "
            "sizes and every body is checked against its sha256. Make the files with "
            "--make-docroot DIR and serve DIR; then point loadcheck at the server."
        ),
        epilog="Exit status: 0 every response whole, 1 mismatches or errors, 2 usage error.",
    )
    p.add_argument("urls", nargs="*", metavar="URL", help="http://HOST:PORT[/PREFIX] to load")
    p.add_argument(
        "--make-docroot",
        type=Path,
        metavar="DIR",
        help="write the pattern files (0 B to 64 MiB) and loadcheck.json into DIR, and exit",
    )
    p.add_argument("-c", "--connections", type=int, default=100, help="default 100")
    p.add_argument("-d", "--duration", type=float, default=10.0, help="seconds (default 10)")
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds without a byte of a due response before it counts as a timeout"
        " (default 30)",
    )
    p.add_argument(
        "--files",
        help="comma list of file names to ask for (default: all, weighted by the manifest)",
    )
    p.add_argument("--seed", type=int, help="seed of the file choice (default: random)")
    p.add_argument(
        "--connect-burst",
        type=int,
        default=200,
        help="connects in progress at once (default 200; keeps under the listen backlog)",
    )
    p.add_argument("--rcvbuf", type=int, help="SO_RCVBUF of every connection")
    p.add_argument("--manifest", type=Path, help="read the manifest here instead of over HTTP")
    p.add_argument(
        "--progress",
        type=float,
        default=5.0,
        help="seconds between progress lines on stderr (default 5; 0: none)",
    )
    p.add_argument("--json", type=Path, metavar="PATH", help="write the summary here, not stdout")
    return p


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if args.make_docroot is not None:
            if args.urls:
                raise LoadcheckError("--make-docroot takes no URL")
            files = make_docroot(args.make_docroot)
            total = sum(f.size for f in files.values())
            print(
                f"{PROG}: {len(files)} files ({total / 2**20:.1f} MiB) and {MANIFEST}"
                f" in {args.make_docroot}",
                file=sys.stderr,
            )
            return 0
        if not args.urls:
            raise LoadcheckError("give a URL, or --make-docroot DIR (see --help)")
        summary = run(
            Options(
                urls=list(args.urls),
                connections=args.connections,
                duration=args.duration,
                timeout=args.timeout,
                connect_burst=args.connect_burst,
                files=args.files.split(",") if args.files else None,
                seed=args.seed,
                progress=args.progress,
                manifest=args.manifest,
                rcvbuf=args.rcvbuf,
            )
        )
    except LoadcheckError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    text = json.dumps(summary, indent=2)
    if args.json is not None:
        args.json.write_text(text + "\n")
    else:
        print(text)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
