"""Issue 12 defects 11 and 12: vfork and fork children; sendmsg reading a
bad msghdr on fds the library never defers."""

from __future__ import annotations

from pathlib import Path

import pytest

from .trust import assert_deferred, modes, prog, run_on_sockets



@pytest.mark.parametrize("mode", modes())
def test_d11_vfork_child_shares_memory(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("d11_fork", tmp_path_factory)
    r = run_on_sockets(mode, [exe, "vfork"], tmp_path)
    assert r.rc == 0, r
    assert r.peer == b"before\nshared=42\n", r
    assert_deferred(mode, r.stats_path, write=2)


@pytest.mark.parametrize("mode", modes())
def test_d11_forked_child_closes_every_fd(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("d11_fork", tmp_path_factory)
    r = run_on_sockets(mode, [exe, "inherit"], tmp_path)
    assert r.rc == 0, r
    assert r.peer == b"parent\ndone\n", r
    assert r.out == b"child at fork:\nchild after close loop:\n", r
    assert_deferred(mode, r.stats_path, write=3, close=2)




@pytest.mark.parametrize("mode", modes())
def test_d12_sendmsg_bad_msghdr_on_fds_never_deferred(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exe = prog("d12_sendmsg_fault", tmp_path_factory)
    r = run_on_sockets(mode, [exe], tmp_path)
    assert r.rc == 0, r
    assert r.out == b"pipe: Socket operation on non-socket\nudp: Bad address\n", r
    # the valid sendmsg calls on stream sockets (1 per child, 1 in the parent)
    assert_deferred(mode, r.stats_path, sendmsg=3)


@pytest.mark.parametrize("mode", [m for m in modes() if m.id != "plain"][:1])
def test_d12_sendmsg_bad_msghdr_with_esca_disable(
    mode: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """ESCA_DISABLE=1: everything passes through, so no deferral to check;
    the library must still not touch the msghdr."""
    exe = prog("d12_sendmsg_fault", tmp_path_factory)
    r = run_on_sockets(mode, [exe], tmp_path, env={"ESCA_DISABLE": "1"})
    assert r.rc == 0, r
    assert r.out == b"pipe: Socket operation on non-socket\nudp: Bad address\n", r
