"""The lists the native layers are made of (esca.h ESCA_EXECUTORS,
ESCA_FLUSH_REASONS; catalog.h ESCA_SYSCALLS, ESCA_LEVERS, ESCA_PASS_REASONS),
as pyesca._core gives them: their shape; `esca run`, `esca stats` and the
tests read them and copy none; pyesca's namespace is its API; README's lists
are these lists."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXECUTORS

import pyesca
from pyesca import _core
from pyesca import run as esca_run
from pyesca import stats as esca_stats

README = Path(__file__).resolve().parent.parent / "README.md"


def _names(rows: tuple[tuple[str, ...], ...]) -> list[str]:
    return [row[0] for row in rows]


def _unique_identifiers(names: list[str]) -> None:
    assert names and all(isinstance(n, str) and n.isidentifier() for n in names), names
    assert len(set(names)) == len(names), names


# ---- the lists -------------------------------------------------------------


def test_syscalls_rows() -> None:
    rows = _core.syscalls()
    assert isinstance(rows, tuple)
    for name, seed, where in rows:
        assert isinstance(seed, bool), name
        assert isinstance(where, str) and where, name
    _unique_identifiers(_names(rows))
    assert sum(seed for _, seed, _ in rows) == 4  # ESCA's four wrappers


@pytest.mark.parametrize("lister", [_core.levers, _core.pass_reasons])
def test_name_help_rows(lister: object) -> None:
    rows = lister()  # type: ignore[operator]
    assert isinstance(rows, tuple)
    for name, about in rows:
        assert isinstance(about, str) and about, name
    _unique_identifiers(_names(rows))


def test_flush_reasons_are_the_stats_keys() -> None:
    reasons = _core.flush_reasons()
    assert isinstance(reasons, tuple)
    _unique_identifiers(list(reasons))
    with pyesca.batch("sequential") as b:
        assert tuple(b.stats()["flush_why"]) == reasons


def test_executor_names() -> None:
    names = _core.executor_names()
    assert isinstance(names, tuple)
    _unique_identifiers(list(names))
    assert names[0] == "auto" and "lkm" in names
    # executors(): those of executor_names() that can be set up here, in order
    usable = _core.executors()
    assert usable == [n for n in names if n in usable] and "auto" not in usable
    assert pyesca.auto_executor() in usable


@pytest.mark.parametrize("name", _core.executor_names())
def test_every_executor_name_is_accepted(name: str) -> None:
    try:
        b = pyesca.batch(name)
    except OSError:  # a known executor that cannot be set up here
        assert name not in _core.executors()
    else:
        with b:
            assert b.executor in _core.executors()


def test_unknown_executor_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown executor") as info:
        pyesca.batch("bogus")
    for name in _core.executor_names():
        assert f"'{name}'" in str(info.value)


def test_defaults_are_written_once() -> None:
    assert (pyesca.DEFAULT_CAPACITY, pyesca.DEFAULT_BYTE_BUDGET) == (
        _core.DEFAULT_CAPACITY,
        _core.DEFAULT_BYTE_BUDGET,
    )
    for fn in (pyesca.batch, pyesca.batch_start):
        params = inspect.signature(fn).parameters
        assert params["capacity"].default == pyesca.DEFAULT_CAPACITY, fn
        assert params["byte_budget"].default == pyesca.DEFAULT_BYTE_BUDGET, fn
    with pyesca.batch("sequential") as b:
        s = b.stats()
    assert s["executor"] == "sequential"


# ---- who reads them ----------------------------------------------------------


def test_run_and_stats_read_the_cores_lists() -> None:
    rows = _core.syscalls()
    assert esca_run.SYSCALLS == tuple(_names(rows))
    assert esca_run.SEED == tuple(name for name, seed, _ in rows if seed)
    assert [tuple(r) for r in esca_run.SYSCALL_ROWS] == list(rows)
    assert esca_run.EXECUTORS == _core.executor_names()
    assert esca_run.LEVERS == dict(_core.levers())
    assert esca_stats.PASS_REASONS == tuple(_names(_core.pass_reasons()))
    assert esca_stats.FLUSH_TRIGGERS == _core.flush_reasons()


def test_tests_run_every_executor() -> None:
    assert EXECUTORS == [n for n in _core.executor_names() if n != "auto"]


def test_run_help_shows_the_tables() -> None:
    p = subprocess.run(
        [sys.executable, "-m", "pyesca.cli", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    lines = [" ".join(line.split()) for line in p.stdout.splitlines()]
    for name, seed, where in _core.syscalls():
        assert f"{name}{' *' if seed else ''} {where}" in lines, name
    for name, about in _core.levers():
        assert f"{name} {about}" in lines, name
    text = " ".join(lines)
    assert "{" + ",".join(_core.executor_names()) + "}" in text
    assert ",".join(esca_run.SEED) in text


# ---- the namespace ---------------------------------------------------------


def _public(names: list[str]) -> list[str]:
    return sorted(n for n in names if not n.startswith("_"))


def test_namespace_is_the_api() -> None:
    """The public names (no leading underscore) of a freshly imported
    pyesca are exactly __all__; private names are underscored."""
    code = "import json, pyesca; print(json.dumps([dir(pyesca), pyesca.__all__]))"
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    names, all_ = json.loads(p.stdout)
    assert _public(names) == sorted(all_)
    assert not {"Any", "annotations", "os"} & set(names)


def test_namespace_here_is_the_api_and_submodules() -> None:
    """In this process other tests imported submodules (pyesca.run, ...):
    those, and nothing else, are added to __all__."""
    submodules = {
        name.split(".")[1] for name in sys.modules if name.startswith("pyesca.")
    }
    public = set(_public(dir(pyesca)))
    assert public - submodules == set(pyesca.__all__)
    for name in pyesca.__all__:
        assert getattr(pyesca, name) is not None, name


# ---- README's lists ------------------------------------------------------------
# Where README has a markdown table (first header `call` in "What is deferred
# and what never is", `lever` in "Beyond ESCA: the levers") it must be the list
# row for row: | `name` | yes or empty (seed) | where | and | `name` | help |.
# Without one, the names its prose lists must be the list's.


def _section(title: str) -> str:
    text = README.read_text()
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"README.md has no section '## {title}'"
    return m.group(1)


def _table(text: str, first_header: str) -> list[list[str]] | None:
    """The body rows of the markdown table whose first header is first_header."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and cells[0] == first_header:
            rows = []
            for body in lines[i + 2 :]:
                if not body.lstrip().startswith("|"):
                    break
                rows.append([c.strip() for c in body.strip().strip("|").split("|")])
            return rows
    return None


def _backticked(text: str) -> list[str]:
    return re.findall(r"`([a-z_]+)`", text)


def test_readme_deferred_calls() -> None:
    sec = _section("What is deferred and what never is")
    rows = _table(sec, "call")
    if rows is not None:
        want = [[f"`{n}`", "yes" if seed else "", where] for n, seed, where in _core.syscalls()]
        assert rows == want
    else:
        deferred = sec.split("Never deferred")[0]
        assert set(_backticked(deferred)) == set(esca_run.SYSCALLS)


def test_readme_levers() -> None:
    sec = _section("Beyond ESCA: the levers")
    rows = _table(sec, "lever")
    if rows is not None:
        assert rows == [[f"`{n}`", about] for n, about in _core.levers()]
    else:
        assert re.findall(r"^- \*\*(\w+)\*\*", sec, re.M) == list(esca_run.LEVERS)


def test_readme_environment_table() -> None:
    rows = {r[0]: r[1] for r in _table(_section("Environment variables"), "variable") or []}
    assert f"`{','.join(esca_run.SYSCALLS)}`" in rows["`ESCA_SYSCALLS`"]
    assert f"`seed` (`{','.join(esca_run.SEED)}`)" in rows["`ESCA_SYSCALLS`"]
    levers = rows["`ESCA_LEVERS`"].split("comma list of")[1].split(";")[0]
    assert _backticked(levers) == list(esca_run.LEVERS)
    assert set(_backticked(rows["`ESCA_EXECUTOR`"])) == set(_core.executor_names())


def test_readme_stats_lists() -> None:
    sec = _section("esca stats")
    why = re.search(r"and why:([^)]*)\)", sec)
    assert why, "README, esca stats: no '(and why: ...)' list of pass reasons"
    assert tuple(_backticked(why.group(1))) == esca_stats.PASS_REASONS
    triggers = re.search(r"flushes by trigger \(([^)]*)\)", sec)
    assert triggers, "README, esca stats: no 'flushes by trigger (...)' list"
    assert tuple(_backticked(triggers.group(1))) == esca_stats.FLUSH_TRIGGERS


def test_readme_run_section() -> None:
    sec = _section("Running a server under pyesca")
    calls = re.search(r"changed: its (.*?) calls", sec, re.S)
    assert calls, "README, Running a server: no 'changed: its ... calls' list"
    assert tuple(_backticked(calls.group(1))) == esca_run.SYSCALLS
    executors = re.search(r"`--executor ([a-z|]+)`", sec)
    assert executors, "README, Running a server: no `--executor a|b|...`"
    assert set(executors.group(1).split("|")) == set(_core.executor_names())


# ---- the exports -----------------------------------------------------------

NATIVE_PRELOAD = README.parent / "native" / "preload"


def test_every_interposer_is_exported() -> None:
    """Each EXPORT function of native/preload/*.c is a dynamic symbol of the
    built libesca.so: the version script (libesca.map) hides anything it does
    not list, and an interposer it hides is silently never called."""
    from pyesca.run import library_path

    defined = set()
    for c in sorted(NATIVE_PRELOAD.glob("*.c")):
        text = c.read_text()
        defined |= set(re.findall(r"^EXPORT\b[^(;]*?\b(\w+)\s*\(", text, re.M))
    assert {"write", "close", "epoll_wait"} <= defined, sorted(defined)
    out = subprocess.run(
        ["nm", "-D", "--defined-only", str(library_path())],
        capture_output=True, text=True, check=True,
    ).stdout
    exported = {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}
    assert sorted(defined - exported) == []
