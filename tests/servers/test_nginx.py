"""nginx under esca run (and plain, the control): bytes, slow and resetting clients, wrk."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pyesca.bench.servers import nginx_conf, start_on_free_port

from .conftest import mode_skip_reason
from .harness import (
    MODES,
    SMALL,
    Docroot,
    Server,
    check_deferred,
    check_every_file,
    check_resets,
    check_slow_client,
    check_wrk,
    esca_command,
    esca_stats_json,
    fetch_all,
    make_docroot,
    run_threads,
    wrk_path,
)

KIND = "nginx"
# nginx's workers answer with writev (the head) and sendfile (the body)
REPLY_CALLS = ("writev", "sendfile")
STOP_WAIT = 20.0  # an upper bound that only catches a hang


def test_every_file_byte_exact(start_server: Callable[[str], Server], docroot: Docroot) -> None:
    srv = start_server(KIND)
    check_every_file(srv, docroot)
    check_deferred(srv, *REPLY_CALLS)


def test_slow_client(start_server: Callable[[str], Server], docroot: Docroot) -> None:
    srv = start_server(KIND)
    check_slow_client(srv, docroot)
    check_deferred(srv, *REPLY_CALLS)


def test_resets_mid_response(start_server: Callable[[str], Server], docroot: Docroot) -> None:
    srv = start_server(KIND)
    check_resets(srv, docroot)
    check_deferred(srv, *REPLY_CALLS)


@pytest.mark.skipif(wrk_path() is None, reason="wrk not installed (tools/deps.sh)")
def test_wrk(start_server: Callable[[str], Server], docroot: Docroot) -> None:
    total = check_wrk(start_server(KIND), docroot)
    if total is None:
        return
    assert total["deferred"] > 0, total
    # nginx's workers (PATH.<pid>) send with writev/sendfile under TCP_NOPUSH
    assert total["syscalls"]["sendfile"]["deferred"] > 0, total["syscalls"]
    assert total["mean_batch_size"] > 1, (total["mean_batch_size"], total["batch_hist"])


@pytest.mark.parametrize("user", ["root", "unprivileged"])
@pytest.mark.parametrize("mode", [m for m in MODES if m != "plain"])
def test_graceful_stop_every_worker_leaves_stats(
    tmp_path: Path, docroot: Docroot, mode: str, user: str, request: pytest.FixtureRequest
) -> None:
    """Issue 13, defect 7: nginx (master + 2 workers) under `esca run --stats
    PATH`, stopped gracefully (SIGQUIT: the workers finish and exit()): one
    PATH.<pid> per worker, and `esca stats` sums them.  "unprivileged": as
    root, nginx's workers become nobody (no `user` directive), who cannot
    create a file in the stats directory; they write into the file they made
    while still root."""
    reason = mode_skip_reason(mode)
    if reason:
        pytest.skip(reason)
    if user == "unprivileged" and os.geteuid() != 0:
        pytest.skip("the workers drop privileges only when nginx starts as root")
    stats = tmp_path / "esca-stats.json"
    workdir = tmp_path / "w"
    workdir.mkdir()
    if user == "unprivileged":
        # nobody must read the docroot (pytest's directories are root's, 0700)
        public = Path(tempfile.mkdtemp(prefix="esca-docroot-"))
        request.addfinalizer(lambda: shutil.rmtree(public, ignore_errors=True))
        docroot = make_docroot(public / "root")
        for d, _, names in os.walk(public):
            os.chmod(d, 0o755)
            for n in names:
                os.chmod(os.path.join(d, n), 0o644)

    def argv(port: int) -> list[str]:
        cmd = nginx_conf(docroot.path, port, workdir, workers=2)
        if user == "unprivileged":
            conf = workdir / "nginx.conf"
            conf.write_text(conf.read_text().replace("user root root;", ""))
        return [*esca_command(), "run", "--executor", mode, "--stats", str(stats), "--", *cmd]

    srv = start_on_free_port(KIND, mode, workdir, argv, stats)
    try:
        workers: set[int] = set()
        deadline = time.monotonic() + 10
        while len(workers) < 2 and time.monotonic() < deadline:
            workers = set(srv.pids()[1:])
            time.sleep(0.05)
        assert len(workers) == 2, srv.pids()
        # enough connections at once that both workers answer some
        for _ in range(3):
            run_threads([lambda: fetch_all(srv.port, docroot, SMALL, rounds=2) for _ in range(8)])
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGQUIT)
        assert srv.proc.wait(STOP_WAIT) == 0
    finally:
        srv.stop()
    files = {p.name for p in tmp_path.glob("esca-stats.json.*") if ".tmp." not in p.name}
    assert {f"esca-stats.json.{pid}" for pid in workers} <= files, (workers, files)
    out = esca_stats_json(stats)
    per = {int(p["pid"]): p for p in out["processes"]}
    assert workers <= set(per), (workers, set(per))
    served = [pid for pid in workers if per[pid]["deferred"] > 0]
    assert served, per
    assert out["total"]["deferred"] == sum(int(p["deferred"]) for p in per.values())
