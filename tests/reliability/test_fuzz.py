"""Fuzz (issue 5, part 4): random call sequences (write, writev, send,
sendmsg, sendfile, shutdown, close, dup, setsockopt, fsync, pread) on unix
socketpairs, a TCP loopback pair, pipes and a file, each writer with its own
byte pattern, run through libesca.so's interposers in a subprocess: every
result and errno, every reader's bytes and the file are the same under the
sequential and uring executors as without the library, and no byte reaches
another fd.  ESCA_FUZZ_EXAMPLES=N runs N examples (default 100, about 20 s)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import usable_executors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyesca

PROG = Path(__file__).parent / "progs" / "fuzz_calls.py"
LIB = Path(pyesca.__file__).parent / "libesca.so"
MODES = ["plain", *usable_executors()]
EXAMPLES = int(os.environ.get("ESCA_FUZZ_EXAMPLES", "100"))

OPS = ["write", "writev", "send", "sendmsg", "sendfile", "setsockopt", "fsync",
       "read", "dup", "shutdown", "close"]
call = st.tuples(
    st.sampled_from(OPS),
    st.integers(min_value=0, max_value=12),  # fd index (mod the fds open)
    st.one_of(st.integers(min_value=0, max_value=64),
              st.integers(min_value=65, max_value=3000)),
)


def run(mode: str, ops: list[Any]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCA_")}
    env.pop("LD_PRELOAD", None)
    if mode != "plain":
        env.update(LD_PRELOAD=str(LIB), ESCA_EXECUTOR=mode, ESCA_CAPACITY="8",
                   ESCA_BUDGET="8192")  # small: full-table and budget flushes too
    p = subprocess.run([sys.executable, str(PROG)], input=json.dumps(ops), env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return dict(json.loads(p.stdout))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(call, min_size=1, max_size=60))
def test_fuzz_same_as_plain(ops: list[Any]) -> None:
    got = {m: run(m, ops) for m in MODES}
    plain = got["plain"]
    for entry in plain["calls"]:
        if entry[0] == "reader":
            assert entry[3] == 0, entry  # the oracle itself: no strays
    for m in MODES[1:]:
        assert got[m]["readers"] == plain["readers"], m  # no byte lost/moved
        assert got[m]["calls"] == plain["calls"], m
