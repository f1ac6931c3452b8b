"""Kernel entries of a running server, counted from outside it by perf.

    perf stat -e raw_syscalls:sys_enter -p PID[,PID...] -x, --delay=-1 --control fd:C,A

perf attaches with its counters disabled; `enable` and `disable` on the
control fd (each answered by `ack` on the ack fd) bracket exactly the load
that is measured, so perf's own start-up is not in the window.  Where perf is
missing or refuses (no tracepoint access, a kernel without it), the count is
`None` with the reason, never an exception that stops a benchmark.

Counting a tracepoint costs the traced process a little on every system call,
so it costs a mode more the more calls it makes: benchmarks count in a run of
their own, not in the run whose requests/s they report.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

EVENT = "raw_syscalls:sys_enter"
ACK_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

T = TypeVar("T")


@dataclass
class PerfCount:
    """A count of EVENT over the pids, or None and the reason."""

    count: int | None
    reason: str = ""
    pids: tuple[int, ...] = ()


def perf_path() -> str | None:
    return shutil.which("perf")


def parse_count(text: str, event: str = EVENT) -> tuple[int | None, str]:
    """perf stat -x, output -> (count, "") or (None, why)."""
    for line in text.splitlines():
        parts = line.split(",")
        if len(parts) < 3 or event not in parts[2:4]:
            continue
        value = parts[0].strip()
        if value.isdigit():
            return int(value), ""
        return None, f"perf: {event} {value or 'not counted'}"
    return None, "perf printed no count for " + event


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith("Events ")]
    return (useful or lines or ["no output"])[-1]


def probe() -> str:
    """'' when perf can count EVENT here, else why not (one line)."""
    exe = perf_path()
    if exe is None:
        return "perf not installed (Debian: linux-perf; tools/deps.sh installs it)"
    try:
        p = subprocess.run(
            [exe, "stat", "-e", EVENT, "-x,", "--", "true"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"perf stat failed: {exc}"
    count, why = parse_count(p.stderr)
    if p.returncode != 0 or count is None:
        return f"perf stat -e {EVENT} failed: {why if p.returncode == 0 else _last_line(p.stderr)}"
    return ""


def _wait_ack(fd: int, proc: subprocess.Popen[bytes]) -> str:
    """'' once perf acks, else why not."""
    deadline = time.monotonic() + ACK_TIMEOUT
    got = b""
    while b"ack" not in got:
        left = deadline - time.monotonic()
        if left <= 0:
            return f"perf did not answer within {ACK_TIMEOUT:.0f}s"
        r, _, _ = select.select([fd], [], [], min(left, 0.2))
        if r:
            chunk = os.read(fd, 64)
            if not chunk:
                return "perf exited"
            got += chunk
        elif proc.poll() is not None:
            return f"perf exited ({proc.returncode})"
    return ""


def count_during(pids: Sequence[int], fn: Callable[[], T]) -> tuple[T, PerfCount]:
    """fn()'s result, and the EVENT count of `pids` (their threads too) while it ran."""
    exe = perf_path()
    if exe is None:
        return fn(), PerfCount(None, "perf not installed", tuple(pids))
    with tempfile.TemporaryDirectory(prefix="esca-perf-") as tmp:
        out = Path(tmp) / "perf.txt"
        err_path = Path(tmp) / "perf.err"
        ctl_r, ctl_w = os.pipe()
        ack_r, ack_w = os.pipe()
        argv = [
            exe,
            "stat",
            "-e",
            EVENT,
            "-p",
            ",".join(map(str, pids)),
            "-x,",
            "-o",
            str(out),
            "--delay=-1",
            "--control",
            f"fd:{ctl_r},{ack_w}",
        ]
        try:
            with open(err_path, "wb") as err:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=err,
                    pass_fds=(ctl_r, ack_w),
                )
        except OSError as exc:
            for fd in (ctl_r, ctl_w, ack_r, ack_w):
                os.close(fd)
            return fn(), PerfCount(None, f"perf: {exc}", tuple(pids))
        os.close(ctl_r)
        os.close(ack_w)
        why = ""
        try:
            try:
                os.write(ctl_w, b"enable\n")
            except BrokenPipeError:
                why = "perf exited"
            why = why or _wait_ack(ack_r, proc)
            result = fn()
            if not why:
                try:
                    os.write(ctl_w, b"disable\n")
                    why = _wait_ack(ack_r, proc)
                except BrokenPipeError:
                    why = "perf exited before the end of the run"
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            os.close(ctl_w)
            os.close(ack_r)
        if why:
            detail = _last_line(err_path.read_text(errors="replace"))
            return result, PerfCount(None, f"{why}: {detail}", tuple(pids))
        text = out.read_text(errors="replace") if out.exists() else ""
        count, why = parse_count(text)
        return result, PerfCount(count, why, tuple(pids))


# ---------------------------------------------------------------- entry cost

ENTRY_ITERATIONS = 50_000
ENTRY_REPEATS = 20


@dataclass
class EntryCost:
    """What one kernel entry costs on this machine, measured."""

    ns: float  # per raw getppid call, the loop included
    loop_ns: float  # per iteration of the same loop without the call
    method: str

    def to_dict(self) -> dict[str, object]:
        return {"ns": round(self.ns, 1), "loop_ns": round(self.loop_ns, 2), "method": self.method}


def entry_cost(
    iterations: int = ENTRY_ITERATIONS, repeats: int = ENTRY_REPEATS, samples: int = 1
) -> EntryCost:
    """A tight C loop of the raw getppid system call (pyesca._core), best of
    `repeats` x `samples` runs of `iterations` calls.  getppid does nothing in
    the kernel beyond entering and leaving it, so this is the floor of what a
    system call costs here (mitigations included); the best run is the one
    least disturbed by other load.  The loop's own cost is measured beside it
    and left in (it is well under 1 ns a call)."""
    from pyesca import _core

    best: tuple[float, float] | None = None
    for _ in range(max(1, samples)):
        call, loop = _core._kernel_entry_ns(iterations, repeats)
        if best is None or call < best[0]:
            best = (call, loop)
    assert best is not None
    return EntryCost(
        best[0],
        best[1],
        f"C loop of syscall(SYS_getppid) in pyesca._core, best of"
        f" {repeats * max(1, samples)} runs of {iterations:,} calls (the loop included:"
        f" {best[1]:.2f} ns an iteration without the call)",
    )
