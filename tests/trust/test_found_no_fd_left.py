"""Found by session 19's memcached audit (progs/found_no_fd_left.c): a thread
whose send parked on a client that does not read, and that then found every
fd number taken (EMFILE), could not make its progress fd, and completed the
parked send in place before its next wait: its loop blocked until that client
read (memcached -t 1 -c 16 -o no_maxconns_fast, numbers full: another
client's answer not within 2 s, 9 runs of 9; plain at once).  Under
sequential the park itself needed the progress fd, and the flush before the
wait blocked; under uring the folded wait (lever fold) hid it, the plain
wait did not; and a pause with the send parked waited for good under uring
(its wait blocked the timer signal, which alone could move the bytes).

Now what no progress fd watches moves on the timer's shots (wait.c,
before_wait), its signal let through a wait's mask (pwait, ppoll).  The ping
must come before the slow reader begins, the pause end when the reader has
every byte, and the reader's bytes be plain's.  3a2e3b8's library: "ping
after" in every wait under sequential, and under uring in each but the
folded epoll wait; the pause hung under uring (its alarm).  (lkm: the guest,
lkm/tests/test_trust.c; its round waited for room on the full socket.)

The reader thread's table, made with no number left, is sequential's: the
process's executor is still the one asked for, in the stats and on stderr
(3a2e3b8 under auto: "esca: io_uring unavailable; auto chose sequential",
and the stats said sequential).

more, exit: d25c1ee (this fix's first build) left such an entry queued
under sequential, no parked send to the rest of the library: a write after
it was accepted (Linux, uring: EAGAIN) and a later one blocked in a waiting
flush, and the exit's drain waited for it for good (session 20's review).
It now parks unwatched (park.c).  ppoll_max: a ppoll whose nfds is
RLIMIT_NOFILE goes without the progress fd (EINVAL), and its mask kept the
timer signal out: the reply never moved (the review, from reading; f9cfa95
times out).  freed: in one flush the reply parks unwatched and a close frees
a number; at c6331cf a later send's park made the progress fd with it, and
the reply was then tried no more (rc 98, no "done" from the reader)."""

from __future__ import annotations

from pathlib import Path

import pytest

from servers.conftest import mode_skip_reason

from .trust import assert_deferred, modes, prog, same_as_plain

# (the wait, the levers): fold changes only uring's epoll waits
CASES = [
    ("epoll", "all"),
    ("epoll", "all,-fold"),
    ("pwait", "all,-fold"),
    ("poll", "all"),
    ("ppoll", "all"),
    ("pause", "all"),
    ("more", "all"),
    ("exit", "all"),
    ("ppoll_max", "all"),
    ("freed", "all"),
]


@pytest.mark.parametrize(("case", "levers"), CASES, ids=[f"{c}-{lv}" for c, lv in CASES])
@pytest.mark.parametrize("mode", modes())
def test_found_no_fd_left(
    mode: str, case: str, levers: str, tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    exe = prog("found_no_fd_left", tmp_path_factory)
    r = same_as_plain(mode, [exe, case], tmp_path, env={"ESCA_LEVERS": levers})
    if r is not None and case != "exit":  # (no number for the stats file)
        # the reply was deferred (and so parked): else this measured nothing
        tot = assert_deferred(mode, r.stats_path, write=2)
        assert tot is not None and tot.executor == mode, (tot, r)
        assert b"esca:" not in r.err, r


@pytest.mark.skipif(bool(mode_skip_reason("uring")), reason=mode_skip_reason("uring") or "")
def test_found_no_fd_left_auto(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("found_no_fd_left", tmp_path_factory)
    r = same_as_plain("auto", [exe, "epoll"], tmp_path)
    assert r is not None
    tot = assert_deferred("auto", r.stats_path, write=2)
    assert tot is not None and tot.executor == "uring", (tot, r)
    assert b"esca:" not in r.err, r
