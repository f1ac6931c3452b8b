"""Helpers of the reliability tests: servers with room for 1,000 connections,
the load client (pyesca.loadcheck, run as a child process) and server RSS.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyesca import DEFAULT_BYTE_BUDGET, loadcheck
from pyesca.bench.servers import SERVERS, Server, child_pids, esca_command, start_on_free_port
from pyesca.stats import load as load_stats

# esca's byte budget per table (the default, stated so the RSS bound is explicit)
BUDGET = DEFAULT_BYTE_BUDGET
# connections a server must take: the load plus the fault clients and probes
MAX_CONNECTIONS = 2048


def server_argv(kind: str, mode: str, docroot: Path, port: int, workdir: Path) -> list[str]:
    cmd = SERVERS[kind](docroot, port, workdir, max_connections=MAX_CONNECTIONS)
    if mode == "plain":
        return cmd
    stats = workdir / "esca-stats.json"
    return [
        *esca_command(),
        "run",
        "--executor",
        mode,
        "--budget",
        str(BUDGET),
        "--stats",
        str(stats),
        "--",
        *cmd,
    ]


@contextmanager
def running(kind: str, mode: str, docroot: Path, workdir: Path) -> Iterator[Server]:
    """A started server; stopped and checked (no crash, no hang) on leaving."""
    stats = workdir / "esca-stats.json" if mode != "plain" else None
    srv = start_on_free_port(
        kind, mode, workdir, lambda port: server_argv(kind, mode, docroot, port, workdir), stats
    )
    try:
        yield srv
    except BaseException:
        srv.stop()
        print(f"=== {kind} ({mode}): {' '.join(srv.argv)}\n{srv.logs()}")
        raise
    srv.check_stopped()
    if stats is not None:
        # every entry counted on its fd and given back once, in every process
        # (a give-back at zero ends a held close early: tests/preload/test_counts.py)
        total = load_stats(stats).total
        assert total.fd_count_underflows == 0, (kind, mode, total.fd_count_underflows)


def vm_rss(pid: int) -> int:
    """Resident bytes of pid (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def threads_of(pid: int) -> int:
    try:
        return len(list(Path(f"/proc/{pid}/task").iterdir()))
    except OSError:
        return 0


@dataclass
class RssSampler:
    """Samples the sum of VmRSS over a server's pids (its workers too)."""

    root: int
    interval: float = 0.2
    peak: int = 0
    peak_threads: int = 0
    peak_pids: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        pids = [self.root, *child_pids(self.root)]
        total = sum(vm_rss(p) for p in pids)
        self.samples += 1
        self.peak = max(self.peak, total)
        self.peak_threads = max(self.peak_threads, sum(threads_of(p) for p in pids))
        self.peak_pids = max(self.peak_pids, len(pids))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()


def make_docroot(path: Path) -> Path:
    loadcheck.make_docroot(path)
    return path


class Load:
    """`python -m pyesca.loadcheck URL ...` in the background."""

    def __init__(
        self, url: str, connections: int, seconds: float, workdir: Path, *extra: str
    ) -> None:
        self.out = workdir / f"loadcheck-{connections}x{seconds:g}.json"
        self.err = workdir / f"loadcheck-{connections}x{seconds:g}.stderr"
        self.argv = [
            sys.executable,
            "-m",
            "pyesca.loadcheck",
            url,
            "--connections",
            str(connections),
            "--duration",
            str(seconds),
            "--timeout",
            "30",
            "--progress",
            "5",
            "--json",
            str(self.out),
            *extra,
        ]
        self.seconds = seconds
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=err)

    def result(self) -> dict[str, Any]:
        """Wait for the summary (an upper bound that only catches hangs)."""
        try:
            rc = self.proc.wait(self.seconds + 90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"loadcheck hung: {' '.join(self.argv)}") from None
        err = self.err.read_text(errors="replace")
        assert rc in (0, 1), f"loadcheck exit {rc}\n{err}"
        summary = dict(json.loads(self.out.read_text()))
        summary["stderr"] = err
        return summary

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wait_until(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
