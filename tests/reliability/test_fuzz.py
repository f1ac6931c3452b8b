"""Fuzz (issue 5, part 4): random call sequences (write, writev, send,
sendmsg, sendfile, shutdown, close, dup, setsockopt, fsync, pread) on unix
socketpairs, a TCP loopback pair, pipes and a file, each writer with its own
byte pattern, run through libesca.so's interposers in a subprocess: every
result and errno, every reader's bytes and the file are the same under the
sequential and uring executors as without the library, and no byte reaches
another fd.  "reopen" makes a socketpair after a close, so fd numbers are
reused (a number whose close may still be deferred).  The seed differs on
every run and is printed (`pytest -s` shows it; a failure's report names it
too); ESCA_FUZZ_SEED=N replays a run.  ESCA_FUZZ_EXAMPLES=N runs N examples
(default 100, about 20 s).  The last test checks from the stats files that
each executor really deferred calls during the fuzz."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from conftest import usable_executors
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import pyesca

PROG = Path(__file__).parent / "progs" / "fuzz_calls.py"
LIB = Path(pyesca.__file__).parent / "libesca.so"
MODES = ["plain", *usable_executors()]
EXAMPLES = int(os.environ.get("ESCA_FUZZ_EXAMPLES", "100"))
SEED = int(os.environ.get("ESCA_FUZZ_SEED") or random.randrange(1 << 32))
print(f"test_fuzz: ESCA_FUZZ_SEED={SEED}")
DEFERRED: Counter[str] = Counter()  # calls deferred, per executor, whole run

OPS = ["write", "writev", "send", "sendmsg", "sendfile", "setsockopt", "fsync",
       "read", "dup", "shutdown", "close", "reopen"]
call = st.tuples(
    st.sampled_from(OPS),
    st.integers(min_value=0, max_value=12),  # fd index (mod the fds open)
    st.one_of(st.integers(min_value=0, max_value=64),
              st.integers(min_value=65, max_value=3000)),
)


def run(mode: str, ops: list[Any]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCA_")}
    env.pop("LD_PRELOAD", None)
    with tempfile.TemporaryDirectory() as tmp:
        stats = Path(tmp) / "stats.json"
        if mode != "plain":
            env.update(LD_PRELOAD=str(LIB), ESCA_EXECUTOR=mode, ESCA_CAPACITY="8",
                       ESCA_BUDGET="8192",  # small: full-table and budget flushes too
                       ESCA_STATS=str(stats))
        p = subprocess.run([sys.executable, str(PROG)], input=json.dumps(ops), env=env,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        if mode != "plain":
            DEFERRED[mode] += int(json.loads(stats.read_text()).get("deferred", 0))
    return dict(json.loads(p.stdout))


@seed(SEED)
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(call, min_size=1, max_size=60))
def test_fuzz_same_as_plain(ops: list[Any]) -> None:
    got = {m: run(m, ops) for m in MODES}
    plain = got["plain"]
    for entry in plain["calls"]:
        if entry[0] == "reader":
            assert entry[3] == 0, entry  # the oracle itself: no strays
    replay = f"replay with ESCA_FUZZ_SEED={SEED}"
    for m in MODES[1:]:
        assert got[m]["readers"] == plain["readers"], (m, replay)  # no byte lost/moved
        assert got[m]["calls"] == plain["calls"], (m, replay, got[m]["fds"], plain["fds"])


def test_fuzz_deferred_calls() -> None:
    """The fuzz above proves something only if the library deferred calls:
    in pass-through (ESCA_DISABLE=1) this fails."""
    assert DEFERRED, "test_fuzz_same_as_plain did not run"
    for mode in MODES[1:]:
        assert DEFERRED[mode] > 0, (mode, dict(DEFERRED), f"ESCA_FUZZ_SEED={SEED}")
