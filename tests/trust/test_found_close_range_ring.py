"""Found by session 12 from the threaded fuzz's one CI failure (seed
4178466281 example 25: "stream 11: no EOF", and "esca: uring executor
unavailable (Invalid argument); using sequential" on stderr): a ring's fd
(and the progress eventfd, and lkm's) has a low number from its syscall
until the core moves it high and marks it the library's; a close_range by
another thread over numbers the program never opened closed it there, and
a number the program then opened could be taken for the ring.  Makers and
close_range/dup2 now exclude each other (fdmap.c, fd_closer_begin;
esca__fd_making in the core).  progs/found_close_range_ring.c starts 60
writer threads, each making its ring, while a thread loops close_range(5,
900), or dup2(0, 5) and close(5): the peer's bytes and the silence on
stderr must be plain's; with the libesca.so of 896ca77 every uring run said
"uring executor unavailable (Bad file descriptor)" (close_range) or failed
(dup2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .trust import modes, prog, same_as_plain


@pytest.mark.parametrize("how", ["close_range", "dup2"])
@pytest.mark.parametrize("mode", modes())
def test_found_close_range_while_rings_are_made(
    mode: str, how: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("found_close_range_ring", tmp_path_factory)
    r = same_as_plain(mode, [exe, how], tmp_path)
    assert r is None or b"esca:" not in r.err, r
