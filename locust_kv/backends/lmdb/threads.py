"""Thread mode: how the transactions of one backend exclude a resize of its map, as a strategy chosen once.

``set_mapsize`` must not run while another OS thread of the process is
inside a transaction (py-lmdb then fails those with EINVAL, or hangs).
Greenlets share one thread and never need a lock (:data:`GREENLETS`). The
engine's first resize that finds other threads in the process switches to a
:class:`ThreadMode` for good: from then on every transaction holds its lock,
and the backend's unlocked fast paths give way (``inline`` False).
"""

from __future__ import annotations

import _thread
from contextlib import AbstractContextManager, nullcontext
from typing import ClassVar, Final

from .locks import allocate_rlock

__all__ = ["GREENLETS", "GreenletMode", "ThreadMode", "TransactionMode"]


class TransactionMode:
    """How the transactions of one backend exclude a resize of its map in this process."""

    inline: ClassVar[bool]
    """Whether the backend's unlocked inlined fast paths may run."""

    lock: _thread.RLock | None
    """Held around every transaction when not None."""

    def guard(self) -> AbstractContextManager[object]:
        """What a transaction (or a snapshot's read) holds while it runs."""
        raise NotImplementedError


class GreenletMode(TransactionMode):
    """One OS thread (any number of greenlets): no transaction spans a switch, so nothing needs a lock."""

    inline = True
    lock = None

    def guard(self) -> AbstractContextManager[object]:
        return nullcontext()


class ThreadMode(TransactionMode):
    """Several OS threads: every transaction holds one lock, which a resize takes to exclude them all."""

    inline = False

    def __init__(self) -> None:
        self.lock = allocate_rlock()

    def guard(self) -> AbstractContextManager[object]:
        lock = self.lock
        assert lock is not None
        return lock


GREENLETS: Final = GreenletMode()
