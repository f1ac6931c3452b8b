"""lighttpd under esca run (and plain, the control): bytes, slow and resetting clients, wrk."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .harness import (
    Docroot,
    Server,
    check_deferred,
    check_every_file,
    check_resets,
    check_slow_client,
    check_wrk,
    wrk_path,
)

KIND = "lighttpd"
# lighttpd answers with writev (the head) and sendfile (the body)
REPLY_CALLS = ("writev", "sendfile")


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
