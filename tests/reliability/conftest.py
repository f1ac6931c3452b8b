"""Reliability tests: real servers under load and faults, with and without pyesca.

`pytest --long` (or ESCA_LONG=1) runs the long variants (60 s of load instead
of 10 s); the default suite runs the short ones.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import compile_c  # noqa: F401  (the one C-compiling helper)
from servers.conftest import mode_params

HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability: load and fault tests against real servers")


def is_long(config: pytest.Config) -> bool:
    return bool(config.getoption("--long", default=False)) or os.environ.get("ESCA_LONG") == "1"


@pytest.fixture(scope="session")
def long_run(request: pytest.FixtureRequest) -> bool:
    return is_long(request.config)


@pytest.fixture(params=mode_params())
def mode(request: pytest.FixtureRequest) -> str:
    """"plain" (the control) or an executor of libesca.so under `esca run`."""
    return str(request.param)
