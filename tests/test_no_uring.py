"""Where io_uring is refused (here: a seccomp filter, as containers install),
`make test`'s pytest run fails at once unless ESCA_TEST_WITHOUT_URING=1 says
to run without it: a suite whose uring tests all skip is no pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compile_c

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def no_uring(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_c(HERE / "progs" / "no_uring.c", tmp_path_factory.mktemp("no_uring"))


def pytest_run(no_uring: Path, opt_out: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ESCA_TEST_WITHOUT_URING"}
    if opt_out:
        env["ESCA_TEST_WITHOUT_URING"] = "1"
    return subprocess.run(
        [str(no_uring), sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(HERE / "test_catalog.py"), "-k", "executor"],
        capture_output=True, text=True, timeout=300, env=env, cwd=HERE.parent,
    )


def test_suite_refuses_to_pass_without_uring(no_uring: Path) -> None:
    p = pytest_run(no_uring, opt_out=False)
    assert p.returncode == 3, p.stdout + p.stderr
    assert "ESCA_TEST_WITHOUT_URING=1" in p.stdout + p.stderr
    assert "Operation not permitted" in p.stdout + p.stderr


def test_opt_out_runs_without_uring(no_uring: Path) -> None:
    p = pytest_run(no_uring, opt_out=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert " passed" in p.stdout
