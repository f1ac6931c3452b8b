"""wrk, the HTTP load generator: run it (bounded in time) and parse what it prints.

    Running 5s test @ http://127.0.0.1:3000/a20.html
      4 threads and 50 connections
      Thread Stats   Avg      Stdev     Max   +/- Stdev
        Latency   519.95us  143.04us   5.00ms   93.63%
        Req/Sec    23.28k     2.88k   47.51k    93.56%
      467823 requests in 5.10s, 9.20GB read
      Socket errors: connect 0, read 8176, write 0, timeout 0
      Non-2xx or 3xx responses: 5
    Requests/sec:  91743.33
    Transfer/sec:      1.80GB

wrk prints sizes in binary units (1.80GB = 1.80 * 2**30 bytes) and times in
us/ms/s/m/h.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

_BYTES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_TIME_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}
# Seconds wrk may overrun its -d before it is killed (it only catches hangs).
GRACE = 30.0


class WrkError(Exception):
    """wrk missing, failed, or printed something not understood."""


def parse_bytes(text: str) -> float:
    """`1.80GB` -> bytes (binary units, as wrk prints them)."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMGTP]?)B?\s*", text)
    if not m:
        raise WrkError(f"not a size: {text!r}")
    return float(m.group(1)) * _BYTES[m.group(2)]


def parse_time_us(text: str) -> float:
    """`519.95us`, `5.00ms`, `1.2s` -> microseconds."""
    m = re.fullmatch(r"\s*([\d.]+)\s*(us|ms|s|m|h)\s*", text)
    if not m:
        raise WrkError(f"not a time: {text!r}")
    return float(m.group(1)) * _TIME_US[m.group(2)]


@dataclass
class Latency:
    """wrk's `Latency` line: per-thread distribution stats."""

    avg_us: float
    stdev_us: float
    max_us: float
    within_stdev_pct: float
    line: str


@dataclass
class WrkResult:
    output: str
    requests: int
    seconds: float = 0.0
    bytes_read: float = 0.0
    requests_per_sec: float = 0.0
    transfer_per_sec: float = 0.0
    latency: Latency | None = None
    socket_errors: dict[str, int] = field(default_factory=dict)
    non_2xx: int = 0

    @property
    def socket_error_total(self) -> int:
        return sum(self.socket_errors.values())

    @property
    def errors(self) -> int:
        """Socket errors and non-2xx/3xx responses together."""
        return self.socket_error_total + self.non_2xx

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("output")
        d["socket_error_total"] = self.socket_error_total
        return d


def parse_wrk(output: str) -> WrkResult:
    """What wrk printed -> WrkResult; WrkError if there is no request count."""
    m = re.search(r"^\s*(\d+) requests in ([\d.]+\w+), ([\d.]+\w*) read", output, re.M)
    if not m:
        raise WrkError(f"wrk output not understood:\n{output}")
    res = WrkResult(
        output,
        int(m.group(1)),
        seconds=parse_time_us(m.group(2)) / 1e6,
        bytes_read=parse_bytes(m.group(3)),
    )
    if r := re.search(r"^Requests/sec:\s*([\d.]+)", output, re.M):
        res.requests_per_sec = float(r.group(1))
    if t := re.search(r"^Transfer/sec:\s*([\d.]+\w*)", output, re.M):
        res.transfer_per_sec = parse_bytes(t.group(1))
    if lat := re.search(
        r"^\s*Latency\s+([\d.]+\w+)\s+([\d.]+\w+)\s+([\d.]+\w+)\s+([\d.]+)%", output, re.M
    ):
        res.latency = Latency(
            parse_time_us(lat.group(1)),
            parse_time_us(lat.group(2)),
            parse_time_us(lat.group(3)),
            float(lat.group(4)),
            lat.group(0).strip(),
        )
    if s := re.search(r"Socket errors:(.*)$", output, re.M):
        for k, v in re.findall(r"(\w+) (\d+)", s.group(1)):
            res.socket_errors[k] = int(v)
    if n := re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output):
        res.non_2xx = int(n.group(1))
    return res


def wrk_path() -> str | None:
    return shutil.which("wrk")


def wrk_version() -> str:
    exe = wrk_path()
    if exe is None:
        return "wrk not installed"
    try:
        p = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"wrk: {exc}"
    m = re.search(r"wrk \S+", p.stdout + p.stderr)
    return m.group(0) if m else "wrk (version unknown)"


def wrk_argv(
    url: str,
    *,
    threads: int,
    connections: int,
    seconds: int,
    cpus: Sequence[int] | None = None,
) -> list[str]:
    """The command line; wrk wants at least as many connections as threads."""
    if not url.startswith(("http://127.0.0.1:", "http://[::1]:", "http://localhost:")):
        raise WrkError(f"refusing a non-loopback URL: {url}")
    exe = wrk_path()
    if exe is None:
        raise WrkError("wrk not installed (tools/deps.sh installs it)")
    threads = max(1, min(threads, connections))
    argv = [exe, f"-t{threads}", f"-c{connections}", f"-d{max(1, seconds)}s", url]
    if cpus:
        argv = ["taskset", "-c", ",".join(map(str, cpus)), *argv]
    return argv


def run_wrk(
    url: str,
    *,
    threads: int = 4,
    connections: int = 50,
    seconds: int = 5,
    cpus: Sequence[int] | None = None,
) -> WrkResult:
    """Run wrk for `seconds` (killed if it overruns by GRACE) and parse it."""
    argv = wrk_argv(url, threads=threads, connections=connections, seconds=seconds, cpus=cpus)
    try:
        p = subprocess.run(
            argv, capture_output=True, text=True, timeout=seconds + GRACE, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk still running {GRACE:.0f}s after its -d{seconds}s: killed") from exc
    if p.returncode != 0:
        raise WrkError(f"wrk failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    return parse_wrk(p.stdout)
