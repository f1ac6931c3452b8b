"""Found by an audit of the fd-lifetime interposers (session 9; not one of
issue 12's defects): calls on a number the program closed while its close
is still pending in the library, and dup2 onto one (progs/found_fd_audit.c,
whose docstring says what each case saw).

Plain is the oracle: each case's output must be the same under each
executor, line for line, except `misdirect`'s dup2, which the library now
refuses with EBUSY (a Linux errno for dup2) rather than let the entries that
still name the number run on the new file; what must hold there is that no
byte of the closing thread reaches the other connection and its peer gets
all it was told, then EOF.  Each case failed before (checked with the
libesca.so of 8a874dd: dup/dup2/dup3 of a closed number made a new fd, every
call after a parked close hung, the failed dup2 reordered the bytes,
225,280 bytes went to the wrong connection, O_NONBLOCK set through one fd
left its dup blocking: a write hung, and a socket passed with SCM_RIGHTS had
its queued byte overtaken by the receiver's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .trust import assert_deferred, modes, prog, run

CASES = ["closed", "dupkey", "scm"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", modes())
def test_found_calls_on_a_closed_number(
    mode: str, case: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("found_fd_audit", tmp_path_factory)
    argv = [exe, *case.split()]
    plain = run("plain", argv, tmp_path, tag="oracle")
    assert plain.rc == 0, plain
    r = run(mode, argv, tmp_path, timeout=30)
    assert r.rc == 0, r
    assert r.lines() == plain.lines(), r
    assert "SLOW" not in r.text() and "BROKEN" not in r.text(), r


@pytest.mark.parametrize("mode", modes())
def test_found_calls_on_a_number_whose_close_is_parked(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("found_fd_audit", tmp_path_factory)
    plain = run("plain", [exe, "parked"], tmp_path, tag="oracle")
    assert plain.rc == 0 and plain.lines()[0] == "writes until EAGAIN", plain
    r = run(mode, [exe, "parked"], tmp_path, timeout=30)
    # the program's alarm(6) kills a hang (rc -14)
    assert r.rc == 0, r
    assert r.lines() == plain.lines(), r


@pytest.mark.parametrize("mode", modes())
def test_found_dup2_onto_a_number_closing_in_another_thread(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("found_fd_audit", tmp_path_factory)
    r = run(mode, [exe, "misdirect"], tmp_path, timeout=30)
    assert r.rc == 0, r
    lines = r.lines()
    want = "ok" if mode == "plain" else "EBUSY"
    assert lines[0] == f"dup2 onto the closed number: {want}", r
    assert lines[1:] == [
        "T's peer got what T was told: yes, then EOF",
        "T's bytes on the other connection: 0",
    ], r


@pytest.mark.parametrize("how", ["fcntl", "ioctl"])
@pytest.mark.parametrize("mode", modes())
def test_found_nonblock_set_through_a_dup(
    mode: str, how: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("found_fd_audit", tmp_path_factory)
    r = run(mode, [exe, "nonblock_dup", how], tmp_path, timeout=30)
    # the program's alarm(6) kills a hang (rc -14)
    assert r.rc == 0, r
    assert r.lines() == [
        "writes through the dup until EAGAIN",
        "the peer got what was accepted: yes",
    ], r


@pytest.mark.parametrize("how", ["truncate", "open_trunc"])
@pytest.mark.parametrize("mode", modes())
def test_found_file_truncated_after_a_deferred_sendfile(
    mode: str, how: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A file truncated by path after a sendfile of it returned: the
    sendfile's bytes first, then the writes, as plainly (the send audit)."""
    exe = prog("found_fd_audit", tmp_path_factory)
    plain = run("plain", [exe, "sendfile_truncate", how, tmp_path], tmp_path, tag="oracle")
    assert plain.rc == 0, plain
    assert plain.lines()[-1] == "the peer got 4106 bytes, 4096 of the file's", plain
    r = run(mode, [exe, "sendfile_truncate", how, tmp_path], tmp_path, timeout=30)
    assert r.rc == 0, r
    assert r.lines() == plain.lines(), r
    assert_deferred(mode, r.stats_path, sendfile=1)
