"""`esca doctor` and the `esca` command line, run as real subprocesses."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from typing import Any

import pytest

from pyesca import doctor

ESCA = [sys.executable, "-m", "pyesca.cli"]

KEYS = {
    "kernel_release",
    "kernel_version",
    "machine",
    "io_uring_disabled",
    "seccomp_mode",
    "seccomp_filters",
    "seccomp",
    "core_error",
    "uring_error",
    "uring_error_name",
    "uring_usable",
    "opcodes",
    "setsockopt_cmd",
    "setup_flags",
    "setup_flag_names",
    "needed_opcodes",
    "missing_opcodes",
    "executors",
    "auto_executor",
    "auto_reason",
}


def esca(*args: str, cmd: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(cmd or ESCA), *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    p = esca("doctor", "--json")
    assert p.returncode in (0, 1), p.stderr
    data: dict[str, Any] = json.loads(p.stdout)
    if data["uring_error"]:
        pytest.skip(f"io_uring refused here: {data['auto_reason']}")
    return data


def test_doctor_json_keys(report: dict[str, Any]) -> None:
    assert KEYS <= report.keys()
    assert report["needed_opcodes"] == list(doctor.NEEDED_OPCODES)


def test_doctor_json_on_this_machine(report: dict[str, Any]) -> None:
    assert report["uring_error"] == 0
    assert "SENDMSG" in report["opcodes"]
    assert "uring" in report["executors"]
    assert "sequential" in report["executors"]
    assert report["auto_executor"] == "uring"
    assert report["uring_usable"] is True


def test_doctor_text_exit_0(report: dict[str, Any]) -> None:
    p = esca("doctor")
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    for label in ("kernel", "io_uring_disabled", "seccomp", "io_uring set-up", "auto"):
        assert label in p.stdout
    assert "SENDMSG" in p.stdout
    assert "auto                uring: " in p.stdout


def test_doctor_script_and_module_agree(report: dict[str, Any]) -> None:
    p = esca("doctor", "--json", cmd=[sys.executable, "-m", "pyesca"])
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["opcodes"] == report["opcodes"]


def test_no_args_prints_usage() -> None:
    p = esca()
    assert p.returncode == 2
    assert "usage: esca" in p.stderr
    assert "doctor" in p.stderr


def test_help_prints_usage() -> None:
    p = esca("--help")
    assert p.returncode == 0
    assert "usage: esca" in p.stdout
    assert "doctor" in p.stdout


def test_unknown_subcommand_one_line() -> None:
    p = esca("frobnicate")
    assert p.returncode != 0
    assert p.stdout == ""
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("esca: ")
    assert "frobnicate" in lines[0]


def test_unknown_option_one_line() -> None:
    p = esca("doctor", "--nope")
    assert p.returncode != 0
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("esca: "), p.stderr


# The explanations, against a stand-in for pyesca._core.


class FakeCore:
    def __init__(self, error: int, opcodes: list[str], executors: list[str], auto: str) -> None:
        self.error, self.opcodes, self._executors, self.auto = error, opcodes, executors, auto

    def uring_probe(self) -> dict[str, Any]:
        return {
            "error": self.error,
            "opcodes": self.opcodes,
            "setsockopt_cmd": False,
            "setup_flags": 0,
        }

    def executors(self) -> list[str]:
        return list(self._executors)

    def auto_executor(self) -> str:
        return self.auto


def fake_proc(tmp_path: Any, disabled: int | None, seccomp: int) -> str:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "status").write_text(
        f"Name:\tpython\nSeccomp:\t{seccomp}\nSeccomp_filters:\t{1 if seccomp == 2 else 0}\n"
    )
    if disabled is not None:
        (tmp_path / "sys" / "kernel").mkdir(parents=True)
        (tmp_path / "sys" / "kernel" / "io_uring_disabled").write_text(f"{disabled}\n")
    return str(tmp_path)


@pytest.mark.parametrize(
    ("disabled", "seccomp", "err", "expect"),
    [
        (2, 0, errno.EPERM, "kernel.io_uring_disabled=2"),
        (1, 0, errno.EPERM, "io_uring_group"),
        (0, 2, errno.EPERM, "seccomp filter"),
        (None, 0, errno.ENOSYS, "no io_uring"),
        (0, 0, errno.EINVAL, "EINVAL"),
    ],
)
def test_explain_refusal(
    tmp_path: Any, disabled: int | None, seccomp: int, err: int, expect: str
) -> None:
    core = FakeCore(err, [], ["sequential"], "sequential")
    r = doctor.gather(core, proc=fake_proc(tmp_path, disabled, seccomp))
    assert r.exit_status == 1
    assert r.io_uring_disabled == disabled
    assert r.seccomp_mode == seccomp
    assert expect in r.auto_reason
    assert r.problem() == r.auto_reason
    assert "n/a" in doctor.format_text(r)


def test_explain_missing_opcodes(tmp_path: Any) -> None:
    ops = [op for op in doctor.NEEDED_OPCODES if op != "URING_CMD"]
    core = FakeCore(0, ops, ["uring", "sequential"], "uring")
    r = doctor.gather(core, proc=fake_proc(tmp_path, None, 0))
    assert r.exit_status == 0
    assert r.missing_opcodes == ["URING_CMD"]
    assert "URING_CMD" in r.auto_reason
    assert r.problem() is None
    assert "not present" in doctor.format_text(r)
