"""Real servers for benchmarks and tests: docroot, generated configs, start/stop by pid.

Everything binds 127.0.0.1 and lives in a directory the caller owns (a
temporary one).  A server is a child of this process, started from a
generated config in the foreground (`lighttpd -D`, nginx `daemon off`), and
stopped by its pid: SIGTERM, then SIGKILL if it has not exited in time.
`esca run` and `taskset` exec the command, so the pid started is the
server's own.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Upper bounds that only catch hangs.
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

# Sizes with the file names the seed and the tests use; other sizes get f<size>.html.
FILE_NAMES: dict[int, str] = {
    100: "a100.html",
    20 << 10: "a20.html",
    1 << 20: "m1.bin",
}

_HTML_LINE = b"<p>pyesca says hello to the world.</p>\n"


class ServerError(Exception):
    """A server that would not start, or that crashed or hung at stop."""


def file_name(size: int) -> str:
    """The docroot name of a file of `size` bytes."""
    return FILE_NAMES.get(size, f"f{size}.html")


@dataclass(frozen=True)
class Docroot:
    path: Path
    sha256: dict[str, str]
    sizes: dict[str, int]


def file_bytes(name: str, size: int) -> bytes:
    """Deterministic text for .html, random bytes for anything else."""
    if name.endswith(".html"):
        return (_HTML_LINE * (size // len(_HTML_LINE) + 1))[:size]
    return os.urandom(size)


def make_docroot(path: Path, files: Mapping[str, int]) -> Docroot:
    """Write `files` (name -> size) into `path`."""
    path.mkdir(parents=True, exist_ok=True)
    sha: dict[str, str] = {}
    for name, size in files.items():
        data = file_bytes(name, size)
        (path / name).write_bytes(data)
        sha[name] = hashlib.sha256(data).hexdigest()
    return Docroot(path, sha, dict(files))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- configs


def lighttpd_conf(
    docroot: Path,
    port: int,
    workdir: Path,
    *,
    max_connections: int = 1024,
    access_log: bool = False,
) -> list[str]:
    """The lighttpd config file and its command line (foreground, one process);
    `access_log`: mod_accesslog writing one line per request to a file."""
    conf = workdir / "lighttpd.conf"
    conns = max(1024, max_connections)
    modules = '"mod_accesslog"' if access_log else ""
    log = f'accesslog.filename = "{workdir / "access.log"}"\n' if access_log else ""
    conf.write_text(
        f"""\
server.bind = "127.0.0.1"
server.port = {port}
server.document-root = "{docroot}"
server.errorlog = "{workdir / "lighttpd-error.log"}"
server.max-keep-alive-requests = 100000
server.max-keep-alive-idle = 60
server.max-connections = {conns}
server.max-fds = {max(4096, 4 * conns)}
server.modules = ({modules})
index-file.names = ("index.html")
mimetype.assign = (
  ".html" => "text/html",
  ".bin" => "application/octet-stream",
)
{log}"""
    )
    return ["lighttpd", "-D", "-f", str(conf)]


def nginx_conf(
    docroot: Path,
    port: int,
    workdir: Path,
    *,
    workers: int = 2,
    max_connections: int = 1024,
    sendfile: bool = True,
    access_log: bool = False,
    log_format: str = "",
) -> list[str]:
    """The nginx config (master + `workers` workers, foreground) and its command line;
    `access_log`: nginx's default `combined` log to a file in `workdir`;
    `log_format`: that log's lines in this format instead.

    As root the workers run as root too (`user root root;`): nginx's default
    user (www-data) could not write esca's stats files into a root-owned
    temporary directory."""
    prefix = _nginx_prefix(workdir)
    user = "user root root;" if os.geteuid() == 0 else ""
    conns = max(1024, 2 * max_connections + 64)
    log = f"access_log {workdir / 'access.log'};" if access_log else "access_log off;"
    if access_log and log_format:
        log = f"log_format t '{log_format}';\n    access_log {workdir / 'access.log'} t;"
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""\
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile {2 * conns};
{user}
pid {prefix / "nginx.pid"};
error_log {workdir / "nginx-error.log"} notice;
events {{ worker_connections {conns}; }}
http {{
    types {{
        text/html html;
        application/octet-stream bin;
    }}
    default_type application/octet-stream;
    {log}
    sendfile {"on" if sendfile else "off"};
    tcp_nopush on;
    keepalive_requests 100000;
    keepalive_timeout 60;
{_nginx_temp_paths(prefix)}
    server {{
        listen 127.0.0.1:{port};
        root {docroot};
    }}
}}
"""
    )
    return _nginx_argv(prefix, workdir, conf)


def _nginx_prefix(workdir: Path) -> Path:
    prefix = workdir / "nginx"
    prefix.mkdir(exist_ok=True)
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / d).mkdir(exist_ok=True)
    return prefix


def _nginx_temp_paths(prefix: Path) -> str:
    return "\n".join(
        f"    {d}_temp_path {prefix / d};"
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )


def _nginx_argv(prefix: Path, workdir: Path, conf: Path) -> list[str]:
    return ["nginx", "-p", str(prefix), "-e", str(workdir / "nginx-error.log"), "-c", str(conf)]


# Debian 12's /var/www/html/index.nginx-debian.html (nginx-common), 615 bytes.
DEBIAN_INDEX_NAME = "index.nginx-debian.html"
DEBIAN_INDEX = b"""<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto;
font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>

<p>For online documentation and support please refer to
<a href="http://nginx.org/">nginx.org</a>.<br/>
Commercial support is available at
<a href="http://nginx.com/">nginx.com</a>.</p>

<p><em>Thank you for using nginx.</em></p>
</body>
</html>
"""


def nginx_debian_conf(
    docroot: Path, port: int, workdir: Path, *, max_connections: int = 768
) -> list[str]:
    """Debian 12's /etc/nginx/nginx.conf with sites-enabled/default, line for line,
    but: 127.0.0.1 on `port` (not *:80 and [::]:80), `daemon off` (foreground,
    a child of esca bench), pid, error and access log in `workdir`, the root
    `docroot`, workers as root (esca's stats files go into a root-owned
    directory), and worker_connections raised above Debian's 768 only when
    --connections needs it.  Kept: worker_processes auto, sendfile and
    tcp_nopush on, the access log (combined format, one line a request),
    gzip on, mime.types, the modules Debian enables, the index list and
    `try_files $uri $uri/ =404`."""
    prefix = _nginx_prefix(workdir)
    user = "user root root;" if os.geteuid() == 0 else ""
    conns = max(768, 2 * max_connections + 64)
    modules = ""
    if Path("/etc/nginx/modules-enabled").is_dir():
        # Debian's load_module lines name modules/*.so under its prefix
        # (/usr/share/nginx), this prefix is the work directory's
        debian_modules = Path("/usr/share/nginx/modules")
        if debian_modules.is_dir() and not (prefix / "modules").exists():
            (prefix / "modules").symlink_to(debian_modules)
        modules = "include /etc/nginx/modules-enabled/*.conf;"
    mime = Path("/etc/nginx/mime.types")
    types = f"include {mime};" if mime.is_file() else "types { text/html html; }"
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""\
daemon off;
{user}
worker_processes auto;
worker_rlimit_nofile {2 * conns};
pid {prefix / "nginx.pid"};
error_log {workdir / "nginx-error.log"};
{modules}
events {{
    worker_connections {conns};
}}
http {{
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    {types}
    default_type application/octet-stream;
    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    access_log {workdir / "access.log"};
    gzip on;
{_nginx_temp_paths(prefix)}
    server {{
        listen 127.0.0.1:{port} default_server;
        root {docroot};
        index index.html index.htm {DEBIAN_INDEX_NAME};
        server_name _;
        location / {{
            try_files $uri $uri/ =404;
        }}
    }}
}}
"""
    )
    return _nginx_argv(prefix, workdir, conf)


# The Python server: a file run by path, so the server process imports
# nothing of pyesca (it runs under `esca run` like any program).
ASYNCIO_SERVER = Path(__file__).resolve().parent / "asyncio_server.py"


def asyncio_cmd(
    docroot: Path, port: int, workdir: Path, *, max_connections: int = 1024
) -> list[str]:
    """asyncio_server.py (one process, one thread) with this Python."""
    return [sys.executable, str(ASYNCIO_SERVER), "--root", str(docroot), "--port", str(port)]


# kind -> config generator: (docroot, port, workdir, **options) -> argv
SERVERS: dict[str, Callable[..., list[str]]] = {
    "lighttpd": lighttpd_conf,
    "nginx": nginx_conf,
}


@dataclass(frozen=True)
class ServerConfig:
    """A named server configuration for `esca bench --config NAME`."""

    name: str
    kind: str  # lighttpd, nginx, asyncio
    about: str  # one line, for --help
    make: Callable[..., list[str]]  # (docroot, port, workdir, *, max_connections) -> argv
    # A page of its own, served at "/" through the index list (nginx-debian's),
    # instead of the --size files requested by name.
    index_page: tuple[str, bytes] | None = None
    workers: str = ""  # nginx's worker_processes, as configured
    access_log: bool = False  # one line a request to workdir/access.log

    @property
    def binary(self) -> str:
        return "python3" if self.kind == "asyncio" else self.kind

    @property
    def install_hint(self) -> str:
        return {"lighttpd": "apt-get install lighttpd", "nginx": "apt-get install nginx"}.get(
            self.kind, ""
        )


def _with(fn: Callable[..., list[str]], **fixed: object) -> Callable[..., list[str]]:
    def make(docroot: Path, port: int, workdir: Path, **opts: object) -> list[str]:
        return fn(docroot, port, workdir, **opts, **fixed)

    return make


CONFIGS: dict[str, ServerConfig] = {
    c.name: c
    for c in (
        ServerConfig(
            "lighttpd",
            "lighttpd",
            "minimal lighttpd (no module, no access log), the seed's setting",
            lighttpd_conf,
        ),
        ServerConfig(
            "lighttpd-accesslog",
            "lighttpd",
            "the minimal lighttpd plus mod_accesslog: one log line a request, to a file",
            _with(lighttpd_conf, access_log=True),
            access_log=True,
        ),
        ServerConfig(
            "nginx",
            "nginx",
            "minimal nginx: master + 1 worker, sendfile on, tcp_nopush on, access_log off",
            _with(nginx_conf, workers=1),
            workers="1",
        ),
        ServerConfig(
            "nginx-accesslog",
            "nginx",
            "the minimal nginx (1 worker, sendfile on) with nginx's default access log to a file",
            _with(nginx_conf, workers=1, access_log=True),
            workers="1",
            access_log=True,
        ),
        ServerConfig(
            "nginx-4w-nosendfile",
            "nginx",
            "nginx, 4 workers, sendfile off (the writev path), default access log to a file",
            _with(nginx_conf, workers=4, sendfile=False, access_log=True),
            workers="4",
            access_log=True,
        ),
        ServerConfig(
            "nginx-debian",
            "nginx",
            "nginx as Debian 12 ships it (nginx.conf + sites-enabled/default): worker_processes"
            " auto, access log, gzip, GET / -> its 615 B index page",
            nginx_debian_conf,
            index_page=(DEBIAN_INDEX_NAME, DEBIAN_INDEX),
            workers="auto",
            access_log=True,
        ),
        ServerConfig(
            "asyncio",
            "asyncio",
            "asyncio_server.py: Python's asyncio streams, one process (this Python)",
            asyncio_cmd,
        ),
    )
}


def server_version(kind: str) -> str:
    """`lighttpd/1.4.69`, `nginx/1.22.1`, or the reason there is none."""
    exe = shutil.which(kind)
    if exe is None:
        return f"{kind} not installed"
    try:
        p = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{kind}: {exc}"
    m = re.search(rf"{kind}/[\w.~+-]+", p.stdout + p.stderr)
    return m.group(0) if m else f"{kind} (version unknown)"


def esca_command() -> list[str]:
    """How to run `esca` with this Python's pyesca."""
    exe = Path(sys.executable).parent / "esca"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "pyesca.cli"]


def child_pids(pid: int) -> list[int]:
    """The pids whose parent is `pid` (nginx's workers), from /proc."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may hold spaces and parentheses
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[1] == str(pid):
            out.append(int(d.name))
    return sorted(out)


@dataclass
class Server:
    kind: str
    mode: str
    port: int
    workdir: Path
    argv: list[str]
    stats: Path | None
    proc: subprocess.Popen[bytes] | None = None
    stderr_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.stderr_path = self.workdir / f"{self.kind}-{self.mode}.stderr"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not started"
        return self.proc.pid

    def pids(self) -> list[int]:
        """The server's pid and its children's (nginx's workers)."""
        return [self.pid, *child_pids(self.pid)]

    def start(self) -> None:
        """Start and wait until the port accepts; ServerError otherwise."""
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                cwd=self.workdir,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"{self.kind} ({self.mode}) exited with {self.proc.returncode} at start"
                    f"\n{self.logs()}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise ServerError(
                        f"{self.kind} ({self.mode}) not accepting on port {self.port}"
                        f"\n{self.logs()}"
                    ) from None
                time.sleep(0.02)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; the exit status (None: killed)."""
        p = self.proc
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                return None
            except KeyboardInterrupt:  # a second Ctrl-C: do not leave it running
                p.kill()
                p.wait()
                raise
        return p.returncode

    def logs(self) -> str:
        out = []
        for f in (self.stderr_path, *sorted(self.workdir.glob("*-error.log"))):
            if f.exists():
                text = f.read_text(errors="replace").strip()
                out.append(f"--- {f.name}:\n{text or '(empty)'}")
        return "\n".join(out)

    def benign_exit(self, status: int | None) -> str:
        """Why a nonzero exit status is no sign of trouble, or ''.

        lighttpd 1.4.69 exits 1 after a normal SIGTERM stop (it logs "server
        stopped by UID = ... PID = ..." first) when a connection is still
        open at that moment: its main keeps the status 1 of a good start
        unless no connection is left.  A race with the bench's last fetch,
        which closes its connection just before the stop (its bytes are
        compared before).  Seen with large responses in flight without
        pyesca; in sessions 20-21's unpinned runs in most `esca` rounds and
        in no `vanilla` one, and gone in both when the stop waits a moment
        (DESIGN.md, "Measuring")."""
        if status != 1 or self.kind != "lighttpd":
            return ""
        log = self.workdir / "lighttpd-error.log"
        try:
            stopped = "server stopped by" in log.read_text(errors="replace")
        except OSError:
            return ""
        return (
            "lighttpd exited 1 after a normal stop (it logged 'server stopped by')"
            if stopped
            else ""
        )

    def problems(self, status: int | None) -> list[str]:
        """What says the server crashed or misbehaved, after stop()."""
        found = []
        if status is None:
            found.append(f"did not exit within {STOP_TIMEOUT}s of SIGTERM")
        elif status not in (0, -signal.SIGTERM) and not self.benign_exit(status):
            found.append(f"exit status {status}")
        for f in (self.stderr_path, *self.workdir.glob("*-error.log")):
            if not f.exists():
                continue
            for line in f.read_text(errors="replace").splitlines():
                if re.search(
                    r"exited on signal|AddressSanitizer|runtime error|Segmentation|Traceback",
                    line,
                ):
                    found.append(f"{f.name}: {line.strip()}")
        return found

    def check_stopped(self) -> None:
        """Stop (if running); ServerError if the server crashed or hung."""
        status = self.stop()
        problems = self.problems(status)
        if problems:
            raise ServerError("\n".join(problems) + "\n" + self.logs())


def start_on_free_port(
    kind: str,
    mode: str,
    workdir: Path,
    argv_for_port: Callable[[int], list[str]],
    stats: Path | None = None,
    tries: int = 3,
) -> Server:
    """A started server on a free port (retried: the port may be taken
    between the pick and the server's bind)."""
    workdir.mkdir(parents=True, exist_ok=True)
    last = ""
    for _ in range(tries):
        port = free_port()
        srv = Server(kind, mode, port, workdir, argv_for_port(port), stats)
        try:
            srv.start()
            return srv
        except ServerError as exc:
            if "Address already in use" not in str(exc):
                raise
            last = str(exc)
    raise ServerError(f"no free port after {tries} tries\n{last}")
