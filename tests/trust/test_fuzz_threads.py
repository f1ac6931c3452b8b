"""The fuzz issue 12 asks for: two writer threads and a closer taking turns
(each thread's deferred calls stay pending across the others' turns), fd
numbers reused, dup2 over busy numbers, close_range, and a SIGALRM handler
that writes, all while the library defers.  The driver (progs/fuzz_threads.c)
checks itself against its own model of the calls (fd numbers legitimately
differ under the library); the plain run proves the model.

The seed varies per run and is printed (replay with ESCA_TRUST_FUZZ_SEED=S);
ESCA_TRUST_FUZZ_EXAMPLES=N sets the number of sequences (default 30; the
issue's bar is 400).  Today the library fails it (defects 1, 2 and 5), so
the executor cases are xfail, not strict: a random run may miss."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from pyesca import stats as esca_stats

from .trust import modes, prog, run

EXAMPLES = int(os.environ.get("ESCA_TRUST_FUZZ_EXAMPLES", "30"))
FOUND = "issue 12 defects 1, 2, 5: found by the threaded fuzz (not strict: random)"


def seed() -> int:
    s = os.environ.get("ESCA_TRUST_FUZZ_SEED")
    return int(s) if s else random.SystemRandom().randrange(1 << 32)


def sequence(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randrange(10, 120)):
        t = rng.choice((0, 1, 2))
        if t < 2:
            op = rng.choices(("open", "write", "close"), (3, 6, 1))[0]
        else:
            op = rng.choices(("close", "dup2", "range", "open"), (4, 2, 1, 1))[0]
        n = rng.choice((0, 1, 7, 100, 1000, 4000))
        lines.append(f"{t} {op} {rng.randrange(8)} {rng.randrange(8)} {n}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param(
            m.values[0],
            marks=[
                *m.marks,
                *([pytest.mark.xfail(strict=False, reason=FOUND)] if m.id != "plain" else []),
            ],
            id=m.id,
        )
        for m in modes()
    ],
)
def test_fuzz_threads_close_range_dup2_signals(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("fuzz_threads", tmp_path_factory)
    s = seed()
    print(f"fuzz seed {s} ({EXAMPLES} examples): ESCA_TRUST_FUZZ_SEED={s} replays it")
    rng = random.Random(s)
    deferred = {"write": 0, "close": 0}
    for i in range(EXAMPLES):
        seq = sequence(rng)
        r = run(mode, [exe], tmp_path, tag=f"ex{i}", input=seq.encode())
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
