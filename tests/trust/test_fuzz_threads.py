"""The fuzz issue 12 asks for: two writer threads and a closer taking turns
(each thread's deferred calls stay pending across the others' turns), fd
numbers reused, dup2 over busy numbers, close_range, and a SIGALRM handler
that writes, all while the library defers.  The driver (progs/fuzz_threads.c)
checks itself against its own model of the calls (fd numbers legitimately
differ under the library); the plain run proves the model.

Each stream is written by one thread (`sequence()`): order across a
hand-over the library cannot see is not kept (README, Limits).

`quiet` runs without the signal handler; `sigalrm` adds it (issue 12
defect 5).  Both must pass: the sigalrm case hung once in ~50 examples
(uring and sequential) until an ending thread stopped getting new tables
and a full non-blocking socket stopped waiting for another thread's parked
bytes (test_found_thread_end.py).

The seed varies per run and is printed (replay with ESCA_TRUST_FUZZ_SEED=S);
ESCA_TRUST_FUZZ_EXAMPLES=N sets the number of sequences (default 30; the
issue's bar is 400)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from pyesca import stats as esca_stats

from .trust import modes, prog, run

EXAMPLES = int(os.environ.get("ESCA_TRUST_FUZZ_EXAMPLES", "30"))


def seed() -> int:
    s = os.environ.get("ESCA_TRUST_FUZZ_SEED")
    return int(s) if s else random.SystemRandom().randrange(1 << 32)


def owned(t: int, a: int) -> int:
    """Writer t's slots: 0-3 for thread 0, 4-7 for thread 1 (each has
    socketpairs, the even slots, and pipes)."""
    return a % 4 + 4 * t


def sequence(rng: random.Random) -> str:
    """Each writer thread writes only its own slots, and a dup2 joins two
    slots of one writer: a stream is written by one thread.  Writes of two
    threads to one stream, ordered by a hand-over the library does not see,
    are ordered only at flushes (README, Limits; DESIGN.md, "Contract:
    order"), so the fuzz does not ask for it.  The closer (thread 2) still
    closes, dup2s over and close_ranges any slot while the writers' entries
    are pending: that is the fd-lifetime contract."""
    lines = []
    for _ in range(rng.randrange(10, 120)):
        t = rng.choice((0, 1, 2))
        a, b = rng.randrange(8), rng.randrange(8)
        if t < 2:
            op = rng.choices(("open", "write", "close"), (3, 6, 1))[0]
            a = owned(t, a)
        else:
            op = rng.choices(("close", "dup2", "range", "open"), (4, 2, 1, 1))[0]
            if op == "dup2":
                b = owned(a // 4, b)
        n = rng.choice((0, 1, 7, 100, 1000, 4000))
        lines.append(f"{t} {op} {a} {b} {n}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "signals",
    [pytest.param(False, id="quiet"), pytest.param(True, id="sigalrm")],
)
@pytest.mark.parametrize("mode", modes())
def test_fuzz_threads_close_range_dup2_signals(
    mode: str,
    signals: bool,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    exe = prog("fuzz_threads", tmp_path_factory)
    s = seed()
    print(f"fuzz seed {s} ({EXAMPLES} examples): ESCA_TRUST_FUZZ_SEED={s} replays it")
    rng = random.Random(s)
    env = {} if signals else {"FUZZ_NO_SIGNAL": "1"}
    deferred = {"write": 0, "close": 0}
    for i in range(EXAMPLES):
        seq = sequence(rng)
        r = run(mode, [exe], tmp_path, tag=f"ex{i}", input=seq.encode(), env=env)
        bad = [ln for ln in r.lines() if ln.startswith("BAD")]
        assert r.rc == 0 and not bad and r.lines()[-1:] == ["all ok"], (
            f"seed {s} example {i}:\n{seq}\n{r.text()}\n{r.err!r}"
        )
        if mode != "plain":
            tot = esca_stats.load(r.stats_path).total
            for c in deferred:
                deferred[c] += tot.syscalls[c].deferred
    if mode != "plain":
        # the writes and closes of the sequences were deferred
        assert deferred["write"] > 0 and deferred["close"] > 0, deferred
