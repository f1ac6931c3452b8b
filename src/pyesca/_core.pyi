"""Type stub of pyesca._core, the CPython binding of the native core."""

from collections.abc import Iterable
from types import TracebackType
from typing import Protocol, TypedDict, final

from typing_extensions import Buffer, Self

class _HasFileno(Protocol):
    def fileno(self) -> int: ...

_FD = int | _HasFileno

DEFAULT_CAPACITY: int
DEFAULT_BYTE_BUDGET: int

class Stats(TypedDict):
    executor: str
    ops: dict[str, int]
    queued: int
    bytes: int
    bytes_copied: int
    flushes: int
    flush_why: dict[str, int]
    kernel_entries: int
    entries_executed: int
    completed: int
    errors: int
    short_completed: int
    resubmitted: int
    fallbacks: int
    direct: int
    batch_sizes: dict[str, int]

class UringProbe(TypedDict):
    error: int
    opcodes: list[str]
    setsockopt_cmd: bool
    setup_flags: int

@final
class Pending:
    @property
    def op(self) -> str: ...
    @property
    def fd(self) -> int: ...
    def done(self) -> bool: ...
    def result(self) -> int: ...

@final
class Batch:
    def __new__(
        cls,
        executor: str = "auto",
        *,
        capacity: int = 1024,
        byte_budget: int = 4194304,
    ) -> Self: ...
    @property
    def executor(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    @property
    def pending(self) -> int: ...
    def write(self, fd: _FD, data: Buffer, /) -> Pending: ...
    def writev(self, fd: _FD, buffers: Iterable[Buffer], /) -> Pending: ...
    def send(self, sock: _FD, data: Buffer, flags: int = 0, /) -> Pending: ...
    def sendmsg(
        self,
        sock: _FD,
        buffers: Iterable[Buffer],
        flags: int = 0,
        *,
        ancdata: Iterable[object] = (),
        address: None = None,
    ) -> Pending: ...
    def sendfile(self, out_fd: _FD, in_fd: _FD, offset: int | None, count: int) -> Pending: ...
    def shutdown(self, sock: _FD, how: int, /) -> Pending: ...
    def close(self, fd: _FD, /) -> Pending: ...
    def setsockopt(
        self, sock: _FD, level: int, optname: int, value: int | Buffer, /
    ) -> Pending: ...
    def fsync(self, fd: _FD, /) -> Pending: ...
    def send_many(self, fds: Iterable[_FD], data: Buffer, flags: int = 0) -> list[Pending]: ...
    def flush(self) -> int: ...
    def finish(self) -> None: ...
    def stats(self) -> Stats: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> bool: ...

def current() -> Batch | None: ...
def executors() -> list[str]: ...
def auto_executor() -> str: ...
def uring_probe() -> UringProbe: ...
def op_names() -> tuple[str, ...]: ...
def _before_fork() -> None: ...
