"""A Python asyncio HTTP server (asyncio_server.py) under esca run: the same bytes."""

from __future__ import annotations

from collections.abc import Callable

from .harness import Docroot, Server, check_every_file, check_resets, check_slow_client

KIND = "asyncio"


def test_every_file_byte_exact(start_server: Callable[[str], Server], docroot: Docroot) -> None:
    check_every_file(start_server(KIND), docroot)


def test_slow_client(start_server: Callable[[str], Server], docroot: Docroot) -> None:
    check_slow_client(start_server(KIND), docroot)


def test_resets_mid_response(start_server: Callable[[str], Server], docroot: Docroot) -> None:
    check_resets(start_server(KIND), docroot)
