"""lighttpd under esca run (and plain, the control): bytes, slow and resetting clients, wrk."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .harness import (
    Docroot,
    Server,
    check_every_file,
    check_resets,
    check_slow_client,
    check_wrk,
    wrk_path,
)

KIND = "lighttpd"


def test_every_file_byte_exact(start_server: Callable[[str], Server], docroot: Docroot) -> None:
    check_every_file(start_server(KIND), docroot)


def test_slow_client(start_server: Callable[[str], Server], docroot: Docroot) -> None:
    check_slow_client(start_server(KIND), docroot)


def test_resets_mid_response(start_server: Callable[[str], Server], docroot: Docroot) -> None:
    check_resets(start_server(KIND), docroot)


@pytest.mark.skipif(wrk_path() is None, reason="wrk not installed (tools/deps.sh)")
def test_wrk(start_server: Callable[[str], Server], docroot: Docroot) -> None:
    total = check_wrk(start_server(KIND), docroot)
    if total is None:
        return
    assert total["deferred"] > 0, total
    # lighttpd answers with writev (head) + sendfile (body); wrk's 50 connections
    # give each epoll_wait several to flush at once
    assert total["syscalls"]["writev"]["deferred"] > 0, total["syscalls"]
    assert total["mean_batch_size"] > 1, (total["mean_batch_size"], total["batch_hist"])
