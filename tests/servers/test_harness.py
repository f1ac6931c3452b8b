"""The harness itself: wrk parsing and crash detection (no server needed)."""

from __future__ import annotations

import signal
from pathlib import Path

from .harness import Server, parse_wrk

WRK_OK = """\
Running 3s test @ http://127.0.0.1:8080/a20.html
  4 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   410.55us  200.12us   5.20ms   90.00%
    Req/Sec    30.10k     2.00k   35.00k    70.00%
  359123 requests in 3.00s, 7.01GB read
Requests/sec: 119707.67
Transfer/sec:      2.34GB
"""

WRK_BAD = """\
Running 3s test @ http://127.0.0.1:8080/a20.html
  4 threads and 50 connections
  1234 requests in 3.00s, 24.10MB read
  Socket errors: connect 0, read 3, write 1, timeout 2
  Non-2xx or 3xx responses: 5
Requests/sec:    411.33
Transfer/sec:      8.03MB
"""


def test_parse_wrk() -> None:
    ok = parse_wrk(WRK_OK)
    assert (ok.requests, ok.socket_error_total, ok.non_2xx) == (359123, 0, 0)
    bad = parse_wrk(WRK_BAD)
    assert bad.requests == 1234
    assert bad.socket_errors == {"connect": 0, "read": 3, "write": 1, "timeout": 2}
    assert (bad.socket_error_total, bad.non_2xx) == (6, 5)


def test_problems(tmp_path: Path) -> None:
    srv = Server("nginx", "uring", 1, tmp_path, ["nginx"], None)
    assert srv.problems(0) == [] and srv.problems(-signal.SIGTERM) == []
    assert srv.problems(None) and srv.problems(-signal.SIGSEGV) and srv.problems(1)
    (tmp_path / "nginx-error.log").write_text(
        "2026/01/01 [notice] 1#1: signal 15 (SIGTERM) received, exiting\n"
        "2026/01/01 [alert] 1#1: worker process 7 exited on signal 11 (core dumped)\n"
    )
    found = srv.problems(0)
    assert len(found) == 1 and "exited on signal 11" in found[0]


def test_lighttpd_exit_1_after_normal_stop(tmp_path: Path) -> None:
    """lighttpd 1.4.69 sometimes exits 1 after a normal SIGTERM stop: not a crash."""
    srv = Server("lighttpd", "plain", 1, tmp_path, ["lighttpd"], None)
    assert srv.problems(1) == ["exit status 1"]  # no log: a real failure
    (tmp_path / "lighttpd-error.log").write_text(
        "2026-01-01: (server.c.1704) server started (lighttpd/1.4.69)\n"
        "2026-01-01: (server.c.2078) server stopped by UID = 0 PID = 7\n"
    )
    assert srv.problems(1) == [] and srv.benign_exit(1)
    assert srv.problems(2) == ["exit status 2"] and srv.problems(-11)
