"""A file closed while a deferred sendfile of it is parked on a slow reader
(DESIGN.md, "Contract: fd lifetime": the kept file).

progs/kept_file.c sends a 4 MiB file to a non-blocking socket whose reader
waits 800 ms, then closes the file, as nginx does once told its last chunk
went.  Plainly the sendfile loop itself waits for the reader and the close
is quick.  Under esca the sendfile is deferred whole and parks on the full
socket at the close's flush:
- "nolock": the close must still be quick (< 400 ms): the parked sendfile
  reads a dup of the file (esca_fd_keep_file).  Before, the close waited for
  the reader (nginx answered nobody meanwhile: tests/reliability/test_stall.py).
- "nolock-seed": the same with ESCA_SYSCALLS=seed (close not selected).
- "lock": the file holds an flock, which the close must drop: right after
  it, a new open of the file gets the lock (a kept dup would hold it until
  the reader had read everything).  There the close waits, as before
  (README, Limits); its time is not asserted.
The reader gets the file's bytes in order in every case.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import compile_c, executor_params

import pyesca

PROGS = Path(__file__).parent / "progs"
LIB = Path(os.environ.get("ESCA_TEST_LIB") or Path(pyesca.__file__).parent / "libesca.so")


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_c(PROGS / "kept_file.c", tmp_path_factory.mktemp("kept"))


@pytest.mark.parametrize("kind", ["nolock", "lock", "nolock-seed"])
@pytest.mark.parametrize("mode", executor_params(plain=True))
def test_close_of_a_file_a_parked_sendfile_reads(
    prog: Path, tmp_path: Path, mode: str, kind: str
) -> None:
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    stats = tmp_path / "s.json"
    if mode != "plain":
        env.update(LD_PRELOAD=str(LIB), ESCA_EXECUTOR=mode, ESCA_QUIET="1",
                   ESCA_BUDGET=str(32 << 20), ESCA_STATS=str(stats))
        if kind.endswith("-seed"):
            # the seed's set: close is not selected, a path of its own
            # through close() that waited for the reader (34c17b3)
            env["ESCA_SYSCALLS"] = "seed"
    p = subprocess.run([str(prog), kind.removesuffix("-seed"), str(tmp_path / "f.bin")], env=env,
                       capture_output=True, text=True, timeout=30, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    got = dict(line.split() for line in p.stdout.splitlines())
    assert got["sent"] == str(4 << 20), p.stdout
    assert got["reader"] == "0", p.stdout  # every byte, in order
    if kind.startswith("nolock"):
        assert got["close_quick"] == "1", p.stdout
    else:
        assert got["lock_free"] == "1", p.stdout
    if mode != "plain":
        s = json.loads(stats.read_text())
        # the premise: the sendfile was deferred (so it could park)
        assert s["syscalls"]["sendfile"]["deferred"] == 1, s["syscalls"]["sendfile"]
