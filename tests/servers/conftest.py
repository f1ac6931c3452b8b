"""Fixtures for the server tests: the docroot, the modes, a started server.

A mode is "plain" (the server as it is: the control), or an executor of
libesca.so (tests/conftest.py EXECUTORS) under `esca run`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from conftest import executor_skip_reason

from pyesca.run import library_path

from .harness import MODES, Docroot, Server, make_docroot, running


def mode_skip_reason(mode: str) -> str | None:
    if mode == "plain":
        return None
    lib = library_path()
    if not lib.is_file():
        return f"libesca.so not built ({lib}): run 'make build'"
    return executor_skip_reason(mode)


def mode_params() -> list[Any]:
    out = []
    for m in MODES:
        reason = mode_skip_reason(m)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        out.append(pytest.param(m, marks=marks, id=m))
    return out


@pytest.fixture(params=mode_params())
def server_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def docroot(tmp_path_factory: pytest.TempPathFactory) -> Docroot:
    return make_docroot(tmp_path_factory.mktemp("docroot"))


@pytest.fixture
def start_server(
    server_mode: str, docroot: Docroot, tmp_path: Path
) -> Iterator[Callable[[str], Server]]:
    """start_server(kind) -> a running server in this test's mode; stopped
    at teardown, where a crash (or a hang at SIGTERM) fails the test."""
    started: list[Server] = []
    try:
        with ExitStack() as stack:

            def start(kind: str) -> Server:
                srv = stack.enter_context(
                    running(kind, server_mode, docroot.path, tmp_path / kind)
                )
                started.append(srv)
                return srv

            yield start
    finally:
        # pytest shows this (captured teardown output) only when the test fails
        for srv in started:
            print(f"=== {srv.kind} ({srv.mode}): {' '.join(srv.argv)}\n{srv.logs()}")
