"""Issue 12 defects 3 and 4: the epoll wait folded into the flush
(IORING_OP_EPOLL_WAIT, lever "fold", kernel >= 6.15) under `uring`.
`sequential` never folds: it is the control with deferral but no fold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .trust import assert_deferred, modes, prog, run


def _folded(mode: str, tot: object) -> None:
    if mode == "uring":
        assert getattr(tot, "waits_folded") >= 1, "uring: no wait was folded"


@pytest.mark.parametrize(
    "mode",
    modes(),
)
def test_d03_no_event_for_a_closed_fd(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("d03_fold", tmp_path_factory)
    r = run(mode, [exe, "stale"], tmp_path)
    assert r.rc == 0, r
    assert r.lines() == ["stale events: 0"], r
    tot = assert_deferred(mode, r.stats_path, write=40, close=40)
    _folded(mode, tot)


@pytest.mark.parametrize(
    "mode",
    modes(),
)
def test_d04_folded_wait_keeps_its_timeout(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("d03_fold", tmp_path_factory)
    r = run(mode, [exe, "eintr"], tmp_path)
    assert r.rc == 0, r
    lines = r.lines()
    assert len(lines) == 4, r
    for i, line in enumerate(lines):
        m = re.fullmatch(rf"wait {i}: n=(-?\d+) (.*) ms=(\d+)", line)
        assert m, r
        assert (m[1], m[2]) == ("0", "ok"), r
        # plain: 500 ms; generous bounds for a loaded machine
        assert 450 <= int(m[3]) <= 10000, r
    tot = assert_deferred(mode, r.stats_path, write=4)
    _folded(mode, tot)
