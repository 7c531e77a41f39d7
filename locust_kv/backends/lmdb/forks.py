"""The fork registry: nothing LMDB survives ``fork()``, so a forked child forgets what its parent had open.

Objects that hold per-process resources (an environment, the side file's
locks) register with :func:`track`; in a forked child, one hook (registered
once, at the first :func:`track`) calls each live object's
``after_fork_in_child()``. The objects are held weakly.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

__all__ = ["ForkAware", "forget", "track"]


class ForkAware(Protocol):
    def after_fork_in_child(self) -> None:
        """In a forked child: stop using what the parent owns, without touching it (its reader slots, its locks)."""


_live: weakref.WeakSet[ForkAware] = weakref.WeakSet()
_hook_registered = False


def track(obj: ForkAware) -> None:
    """Call ``obj.after_fork_in_child()`` in every forked child while ``obj`` lives (until :func:`forget`)."""
    global _hook_registered
    if not _hook_registered:
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _hook_registered = True
    _live.add(obj)


def forget(obj: ForkAware) -> None:
    _live.discard(obj)


def _after_fork_in_child() -> None:
    for obj in list(_live):
        obj.after_fork_in_child()
