"""A small HTTP/1.1 static file server on asyncio, for running under `esca run`.

    python asyncio_server.py --root DIR --port N [--host 127.0.0.1]

GET only, keep-alive, Content-Length always.  Files up to 64 KiB go out with
the head in one transport.write() (the socket's send); bigger ones after the
head with loop.sendfile() (os.sendfile on the socket).  SIGTERM and SIGINT
stop it with exit status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

SMALL_FILE = 64 << 10
TYPES = {".html": "text/html", ".bin": "application/octet-stream"}


def _head(status: str, length: int, ctype: str = "text/plain") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nServer: pyesca-asyncio\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


async def _respond(root: Path, target: str, writer: asyncio.StreamWriter) -> None:
    name = target.split("?", 1)[0].lstrip("/")
    path = (root / name).resolve()
    if root not in path.parents or not path.is_file():
        body = b"not found\n"
        writer.write(_head("404 Not Found", len(body)) + body)
        return
    size = path.stat().st_size
    head = _head("200 OK", size, TYPES.get(path.suffix, "application/octet-stream"))
    with open(path, "rb") as f:
        if size <= SMALL_FILE:
            writer.write(head + f.read())
            return
        writer.write(head)
        await writer.drain()
        await asyncio.get_running_loop().sendfile(writer.transport, f, 0, size)


async def handle(root: Path, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = line.split(" ")
            if len(parts) != 3 or parts[0] != "GET":
                writer.write(_head("400 Bad Request", 0))
                await writer.drain()
                break
            await _respond(root, parts[1], writer)
            await writer.drain()
    except (ConnectionError, asyncio.LimitOverrunError):
        pass  # the client went away (or reset): nothing to answer
    except asyncio.CancelledError:
        # the server is stopping; returning (not raising) keeps 3.11's streams
        # from logging the cancellation as an error
        writer.close()
        return
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, asyncio.CancelledError):
        pass


async def serve(root: Path, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(
        lambda r, w: handle(root, r, w), host, port, reuse_address=True
    )
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--port", required=True, type=int)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args(argv)
    root = args.root.resolve()
    if not root.is_dir():
        print(f"asyncio_server: {root}: not a directory", file=sys.stderr)
        return 2
    asyncio.run(serve(root, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
