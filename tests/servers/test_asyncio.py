"""A Python asyncio HTTP server (asyncio_server.py) under esca run: the same
bytes, sent by deferred calls."""

from __future__ import annotations

from collections.abc import Callable

from .harness import (
    Docroot,
    Server,
    check_deferred,
    check_every_file,
    check_resets,
    check_slow_client,
)

KIND = "asyncio"
# asyncio_server.py: the head (and a small file) with the transport's send,
# a big file's body with loop.sendfile (os.sendfile on the socket)
REPLY_CALLS = ("send", "sendfile")


def test_every_file_byte_exact(start_server: Callable[[str], Server], docroot: Docroot) -> None:
    srv = start_server(KIND)
    check_every_file(srv, docroot)
    check_deferred(srv, *REPLY_CALLS)


def test_slow_client(start_server: Callable[[str], Server], docroot: Docroot) -> None:
    srv = start_server(KIND)
    check_slow_client(srv, docroot)
    check_deferred(srv, *REPLY_CALLS)


def test_resets_mid_response(start_server: Callable[[str], Server], docroot: Docroot) -> None:
    srv = start_server(KIND)
    check_resets(srv, docroot)
    check_deferred(srv, *REPLY_CALLS)
