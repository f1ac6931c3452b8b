"""pyesca: ESCA-style system call batching for Linux.

Calls made on a :class:`Batch` do not enter the kernel one by one: they are
queued into a per-thread batch table and run together when the batch is
flushed (under the ``uring`` executor: one ``io_uring_enter`` for the whole
batch)::

    import socket, pyesca
    a, b = socket.socketpair()
    with pyesca.batch() as batch:
        n = batch.send(a, b"hello ")
        m = batch.writev(a.fileno(), [b"wor", b"ld"])
        batch.shutdown(a, socket.SHUT_WR)
    assert (n.result(), m.result()) == (6, 5)

Each op returns a :class:`Pending`; its :meth:`Pending.result` is what the
plain call returns (the bytes asked for, or 0) or raises the ``OSError`` the
plain call would raise.  The bytes of an op are copied when it is queued, so
the caller may reuse its buffer at once.
"""

# Only the names of __all__ are public: the rest is private (underscored),
# and no `from __future__ import annotations` (it binds `annotations`).
import os as _os
from typing import Any as _Any

__all__ = [
    "DEFAULT_BYTE_BUDGET",
    "DEFAULT_CAPACITY",
    "Batch",
    "Pending",
    "auto_executor",
    "batch",
    "batch_flush",
    "batch_start",
    "current",
    "executors",
]

# The names __all__ takes from pyesca._core.
_CORE_NAMES = (
    "DEFAULT_BYTE_BUDGET",
    "DEFAULT_CAPACITY",
    "Batch",
    "Pending",
    "auto_executor",
    "current",
    "executors",
)


class _Unavailable:
    """Stands in for a _core that cannot be loaded: says why on use."""

    def __init__(self, error: ImportError) -> None:
        self.error = error

    def __getattr__(self, name: str) -> _Any:
        raise ImportError(f"pyesca._core cannot be loaded: {self.error}") from self.error


try:
    from . import _core as _c
    from ._core import (
        DEFAULT_BYTE_BUDGET,
        DEFAULT_CAPACITY,
        Batch,
        Pending,
        auto_executor,
        current,
        executors,
    )

    _capacity, _byte_budget = DEFAULT_CAPACITY, DEFAULT_BYTE_BUDGET
except ImportError as _exc:  # `import pyesca` (and `esca doctor`) still work
    # not bound as `_core`: `from pyesca import _core` raises the real error
    _c = _Unavailable(_exc)  # type: ignore[assignment]
    _capacity = _byte_budget = 0  # unused: batch() raises the ImportError first

    def __getattr__(name: str) -> _Any:
        if name in _CORE_NAMES:
            return getattr(_c, name)
        raise AttributeError(f"module 'pyesca' has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})


__version__ = "0.1.0"


def batch(
    executor: str = "auto",
    *,
    capacity: int = _capacity,
    byte_budget: int = _byte_budget,
) -> "Batch":
    """A new batch of this thread, to use as a context manager.

    ``executor`` is ``"auto"`` (the first of ``"lkm"``, ``"uring"`` and
    ``"sequential"`` that can be set up here: :func:`auto_executor`),
    ``"lkm"`` (the esca kernel module, /dev/esca), ``"uring"`` or
    ``"sequential"`` (OSError if the one named cannot be set up here).
    ``capacity`` (:data:`DEFAULT_CAPACITY`) is the number of entries the
    table holds and ``byte_budget`` (:data:`DEFAULT_BYTE_BUDGET`) the bytes
    it may own; when either is full the batch flushes by itself.  Leaving
    the ``with`` block flushes and ends it.
    """
    return _c.Batch(executor, capacity=capacity, byte_budget=byte_budget)


def batch_start(
    executor: str = "auto",
    *,
    capacity: int = _capacity,
    byte_budget: int = _byte_budget,
) -> "Batch":
    """Open a batch segment on this thread (ESCA's ``batch_start()``).

    The batch becomes :func:`current` until :func:`batch_flush`.
    """
    b = _c.Batch(executor, capacity=capacity, byte_budget=byte_budget)
    return b.__enter__()


def batch_flush() -> None:
    """Flush and end this thread's current batch (ESCA's ``batch_flush()``).

    Does nothing when no batch is open.
    """
    b = _c.current()
    if b is not None:
        b.finish()


if hasattr(_os, "register_at_fork") and not isinstance(_c, _Unavailable):
    # Run this thread's queued ops before fork, so the child does not
    # inherit them; the child's tables are dropped by the extension itself.
    _os.register_at_fork(before=_c._before_fork)
