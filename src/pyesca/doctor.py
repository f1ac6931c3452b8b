"""`esca doctor`: can pyesca batch through io_uring (or the esca kernel
module, /dev/esca) here, and if not, why not.

`gather()` collects the facts into a `Report` (from /proc, uname and the
native core's own io_uring probe); `format_text()` and `Report.to_dict()`
render it.  Nothing here decides which executor is used: that is the core's
`auto_executor()`; the doctor only explains its choice.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import textwrap
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

# The io_uring opcodes pyesca's uring executor issues.
NEEDED_OPCODES: tuple[str, ...] = (
    "SEND",
    "SENDMSG",
    "WRITE",
    "WRITEV",
    "READ",
    "SHUTDOWN",
    "CLOSE",
    "FSYNC",
    "POLL_ADD",
    "URING_CMD",
)

# IORING_SETUP_* bits (include/uapi/linux/io_uring.h), for display.
SETUP_FLAGS: tuple[tuple[int, str], ...] = (
    (1 << 0, "IOPOLL"),
    (1 << 1, "SQPOLL"),
    (1 << 2, "SQ_AFF"),
    (1 << 3, "CQSIZE"),
    (1 << 4, "CLAMP"),
    (1 << 5, "ATTACH_WQ"),
    (1 << 6, "R_DISABLED"),
    (1 << 7, "SUBMIT_ALL"),
    (1 << 8, "COOP_TASKRUN"),
    (1 << 9, "TASKRUN_FLAG"),
    (1 << 10, "SQE128"),
    (1 << 11, "CQE32"),
    (1 << 12, "SINGLE_ISSUER"),
    (1 << 13, "DEFER_TASKRUN"),
    (1 << 14, "NO_MMAP"),
    (1 << 15, "REGISTERED_FD_ONLY"),
    (1 << 16, "NO_SQARRAY"),
)

SECCOMP_MODES: dict[int, str] = {0: "none", 1: "strict", 2: "filter"}

# The esca kernel module's device (lkm/): the `lkm` executor needs it.
LKM_DEVICE = "/dev/esca"


class Core(Protocol):
    """What the doctor uses of pyesca._core (a fake one can stand in)."""

    def uring_probe(self) -> dict[str, Any]: ...

    def executors(self) -> list[str]: ...

    def auto_executor(self) -> str: ...


@dataclass
class Report:
    kernel_release: str
    kernel_version: str
    machine: str
    # /proc/sys/kernel/io_uring_disabled: None when the sysctl does not exist.
    io_uring_disabled: int | None
    # /proc/self/status Seccomp: 0 none, 1 strict, 2 filter; None if unknown.
    seccomp_mode: int | None
    seccomp_filters: int | None
    # Why pyesca._core could not be loaded, or None.
    core_error: str | None = None
    # io_uring set-up: 0 worked, else a positive errno; None if not probed.
    uring_error: int | None = None
    opcodes: list[str] = field(default_factory=list)
    setsockopt_cmd: bool = False
    setup_flags: int = 0
    needed_opcodes: list[str] = field(default_factory=lambda: list(NEEDED_OPCODES))
    missing_opcodes: list[str] = field(default_factory=list)
    executors: list[str] = field(default_factory=list)
    auto_executor: str | None = None
    auto_reason: str = ""
    # Whether /dev/esca (the kernel module's device) exists.
    lkm_device: bool = False

    @property
    def uring_usable(self) -> bool:
        return "uring" in self.executors

    @property
    def uring_error_name(self) -> str | None:
        return errno_name(self.uring_error) if self.uring_error else None

    @property
    def setup_flag_names(self) -> list[str]:
        return flag_names(self.setup_flags)

    @property
    def exit_status(self) -> int:
        """0 when the uring (or lkm) executor is usable, 1 when only sequential is."""
        return 0 if self.uring_usable or "lkm" in self.executors else 1

    def problem(self) -> str | None:
        """One line saying why no batching executor is usable, or None."""
        return None if self.exit_status == 0 else self.auto_reason

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["uring_error_name"] = self.uring_error_name
        d["setup_flag_names"] = self.setup_flag_names
        d["seccomp"] = seccomp_text(self.seccomp_mode, self.seccomp_filters)
        d["uring_usable"] = self.uring_usable
        return d


def errno_name(e: int) -> str:
    return errno.errorcode.get(e, f"errno {e}")


def flag_names(flags: int) -> list[str]:
    names = [name for bit, name in SETUP_FLAGS if flags & bit]
    rest = flags & ~sum(bit for bit, _ in SETUP_FLAGS)
    if rest:
        names.append(hex(rest))
    return names


def seccomp_text(mode: int | None, filters: int | None) -> str:
    if mode is None:
        return "unknown"
    text = SECCOMP_MODES.get(mode, f"mode {mode}")
    if mode == 2 and filters is not None:
        text += f" ({filters} filter{'s' if filters != 1 else ''})"
    return text


def read_io_uring_disabled(proc: str = "/proc") -> int | None:
    try:
        with open(os.path.join(proc, "sys/kernel/io_uring_disabled")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def read_seccomp(proc: str = "/proc") -> tuple[int | None, int | None]:
    mode: int | None = None
    filters: int | None = None
    try:
        with open(os.path.join(proc, "self/status")) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == "Seccomp":
                    mode = int(value)
                elif key == "Seccomp_filters":
                    filters = int(value)
    except (OSError, ValueError):
        pass
    return mode, filters


def explain(r: Report) -> str:
    """Why `auto` picks what it picks, in one line."""
    if r.core_error is not None:
        return f"pyesca._core cannot be loaded: {r.core_error}"
    if r.auto_executor == "lkm":
        return f"the esca kernel module is loaded ({LKM_DEVICE})"
    if r.auto_executor == "uring":
        why = "io_uring set-up works"
        if r.setup_flags:
            why += f" (with {'|'.join(r.setup_flag_names)})"
        if r.missing_opcodes:
            return why + (
                f"; the kernel lacks {', '.join(r.missing_opcodes)}:"
                " those ops run as plain system calls"
            )
        return why + " and the kernel has every opcode pyesca needs"
    e = r.uring_error
    if e:
        name = errno_name(e)
        if e == errno.EPERM:
            if r.io_uring_disabled == 2:
                return "io_uring is disabled by sysctl kernel.io_uring_disabled=2 (EPERM)"
            if r.io_uring_disabled == 1:
                return (
                    "io_uring is limited by sysctl kernel.io_uring_disabled=1 and this"
                    " process is not in kernel.io_uring_group (EPERM)"
                )
            if r.seccomp_mode == 2:
                return "io_uring_setup is refused by a seccomp filter (EPERM)"
            return "io_uring_setup is refused (EPERM)"
        if e == errno.ENOSYS:
            if r.seccomp_mode == 2:
                return (
                    "io_uring_setup fails with ENOSYS: no io_uring in this kernel"
                    " or a seccomp filter"
                )
            return "this kernel has no io_uring (ENOSYS)"
        if e == errno.ENOMEM:
            return "io_uring set-up fails with ENOMEM (locked-memory limit? see ulimit -l)"
        return f"io_uring set-up fails with {name} ({os.strerror(e)})"
    if r.auto_executor is None:
        return "no executor could be set up"
    return f"the uring executor cannot be set up here; auto uses {r.auto_executor}"


def gather(core: Core | ModuleType | None = None, proc: str = "/proc") -> Report:
    """Collect the facts.  `core` defaults to pyesca._core, imported here."""
    u = os.uname()
    mode, filters = read_seccomp(proc)
    r = Report(
        kernel_release=u.release,
        kernel_version=u.version,
        machine=u.machine,
        io_uring_disabled=read_io_uring_disabled(proc),
        seccomp_mode=mode,
        seccomp_filters=filters,
        lkm_device=os.path.exists(LKM_DEVICE),
    )
    if core is None:
        try:
            from pyesca import _core as core
        except ImportError as exc:
            r.core_error = str(exc)
            r.auto_reason = explain(r)
            return r
    probe = core.uring_probe()
    r.uring_error = int(probe["error"])
    r.opcodes = [str(op) for op in probe["opcodes"]]
    r.setsockopt_cmd = bool(probe["setsockopt_cmd"])
    r.setup_flags = int(probe["setup_flags"])
    if r.uring_error == 0:
        have = set(r.opcodes)
        r.missing_opcodes = [op for op in NEEDED_OPCODES if op not in have]
    r.executors = list(core.executors())
    try:
        r.auto_executor = core.auto_executor()
    except OSError as exc:
        r.auto_executor = None
        r.auto_reason = f"no executor could be set up: {exc}"
        return r
    r.auto_reason = explain(r)
    return r


def _wrap(words: list[str], indent: int, width: int = 100) -> str:
    if not words:
        return "none"
    pad = " " * indent
    text = textwrap.fill(" ".join(words), width=width, initial_indent=pad, subsequent_indent=pad)
    return text[indent:]


def format_text(r: Report) -> str:
    col = 20

    def row(label: str, value: str) -> str:
        return f"{label:<{col}}{value}"

    if r.io_uring_disabled is None:
        sysctl = "not present"
    else:
        meaning = {0: "allowed", 1: "only for kernel.io_uring_group", 2: "disabled"}
        sysctl = f"{r.io_uring_disabled} ({meaning.get(r.io_uring_disabled, '?')})"

    lines = [
        row("kernel", f"{r.kernel_release} {r.machine} ({r.kernel_version})"),
        row("io_uring_disabled", sysctl),
        row("seccomp", seccomp_text(r.seccomp_mode, r.seccomp_filters)),
    ]
    if r.core_error is not None:
        lines.append(row("pyesca._core", f"cannot be loaded: {r.core_error}"))
    elif r.uring_error is not None:
        if r.uring_error == 0:
            flags = "|".join(r.setup_flag_names) or "default flags"
            setup = f"ok ({flags})"
        else:
            name = r.uring_error_name or ""
            setup = f"failed: {name} ({os.strerror(r.uring_error)})"
        lines += [
            row("io_uring set-up", setup),
            row(f"opcodes ({len(r.opcodes)})", _wrap(r.opcodes, col)),
            row("setsockopt cmd", "yes" if r.setsockopt_cmd else "no"),
            row("pyesca needs", _wrap(r.needed_opcodes, col)),
            row(
                "missing",
                "n/a (no ring)" if r.uring_error else _wrap(r.missing_opcodes, col),
            ),
            row("executors", ", ".join(r.executors) or "none"),
        ]
    if r.lkm_device:
        lkm = "usable" if "lkm" in r.executors else "present, but cannot be set up"
    else:
        lkm = "not loaded (make -C lkm && insmod lkm/esca.ko)"
    lines.append(row(f"lkm ({LKM_DEVICE})", lkm))
    lines.append(row("auto", f"{r.auto_executor or 'none'}: {r.auto_reason}"))
    return "\n".join(lines)
