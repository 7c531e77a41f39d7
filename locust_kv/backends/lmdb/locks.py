"""The side file ``<path>-kvlock``: cross-process POSIX locks, the agreed map size, and the disk's reserve.

Every process of one store keeps one descriptor of it for its lifetime
(:meth:`SideFile.acquire`). Byte-range locks at fixed offsets serialise
resizes (:data:`RESIZE_LOCK`) and mark a running backup, restore or rebuild
(:data:`BACKUP_LOCK`, :data:`RESTORE_LOCK`, :data:`REBUILD_LOCK`), so that
other processes can see it; the kernel drops a process's locks when it dies.
"""

from __future__ import annotations

import _thread
import errno
import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ClassVar, Final

from gevent.monkey import get_original  # gevent ships no types: Any (pyproject's mypy overrides)

from ...errors import DiskStoreFullError, DiskStoreOpenError
from . import forks
from .errors import NO_SPACE, os_error
from .layout import PAGE_SIZE

__all__ = ["BACKUP_LOCK", "REBUILD_LOCK", "RESIZE_LOCK", "RESTORE_LOCK", "SPARE_BYTES", "SideFile", "allocate_lock", "allocate_rlock", "real_sleep"]

# The real OS lock and sleep, even when gevent has patched them: they guard
# sections that never yield, against OS threads of this process.
allocate_lock: Final[Callable[[], _thread.LockType]] = get_original("_thread", "allocate_lock")
allocate_rlock: Final[Callable[[], _thread.RLock]] = get_original("_thread", "RLock")
real_sleep: Final[Callable[[float], None]] = get_original("time", "sleep")

# Byte offsets of the locks in the side file (the first 8 bytes hold the agreed map size).
RESIZE_LOCK: Final = 64
BACKUP_LOCK: Final = 65
RESTORE_LOCK: Final = 66
REBUILD_LOCK: Final = 67  # shared: held by every process running a rebuild

SPARE_BYTES: Final = 1 << 20
"""Disk space the side file holds for the map to take when the disk fills up between two growths."""


class SideFile:
    """``<path>-kvlock``, shared by the processes of one store.

    Its first 8 bytes hold the map size the processes agreed on; byte-range
    POSIX locks on it serialise resizes and mark a running backup or restore.
    POSIX locks belong to the process, are released when it dies, and are not
    inherited by a forked child, so each process keeps one descriptor per
    store for its lifetime (closing any descriptor of the file would drop all
    of the process's locks on it). The flags say what this process runs.
    """

    _open: ClassVar[dict[str, SideFile]] = {}

    def __init__(self, store_path: str, fd: int) -> None:
        self.store_path = store_path
        self.fd = fd
        self.users = 0
        self.backup_owner: object | None = None
        self.restoring = False
        self.rebuilding = 0  # rebuilds running in this process (greenlets or threads)
        # Threads of this process resize one at a time: POSIX locks do not exclude them.
        self.guard = allocate_lock()

    def after_fork_in_child(self) -> None:
        """The child holds none of the parent's locks, and runs none of its backups or restores."""
        self.backup_owner = None
        self.restoring = False
        self.rebuilding = 0
        self.guard = allocate_lock()

    @classmethod
    def acquire(cls, store_path: str) -> SideFile:
        side = cls._open.get(store_path)
        if side is None:
            path = store_path + "-kvlock"
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise DiskStoreOpenError(f"could not open the disk store's lock file {path}: {os_error(exc)}") from exc
            side = cls._open[store_path] = cls(store_path, fd)
            forks.track(side)
        side.users += 1
        return side

    def release(self) -> None:
        self.users -= 1
        self.close_if_unused()

    def close_if_unused(self) -> None:
        """Close the descriptor once no backend uses it and no backup or restore holds a lock on it."""
        if self.users > 0 or self.backup_owner is not None or self.restoring or self.rebuilding:
            return
        if SideFile._open.get(self.store_path) is self:
            del SideFile._open[self.store_path]
            os.close(self.fd)

    def try_lock(self, offset: int) -> bool:
        """Take the lock at ``offset`` without waiting; whether it was free."""
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True

    def unlock(self, offset: int) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, offset)

    def begin_rebuild(self) -> None:
        """Mark a rebuild running in this process: a shared lock other processes can see, and a count."""
        with self.guard:
            if self.rebuilding == 0:
                # Waits only while another process probes with its exclusive lock (microseconds).
                fcntl.lockf(self.fd, fcntl.LOCK_SH, 1, REBUILD_LOCK)
            self.rebuilding += 1

    def end_rebuild(self) -> None:
        with self.guard:
            self.rebuilding -= 1
            if self.rebuilding == 0:
                self.unlock(REBUILD_LOCK)
        self.close_if_unused()

    def rebuild_running(self) -> bool:
        """Whether any process (this one included) runs a rebuild of the store."""
        return self.rebuilding > 0 or self.held_elsewhere(REBUILD_LOCK)

    def held_elsewhere(self, offset: int) -> bool:
        """Whether another process holds the lock at ``offset`` (this one must not)."""
        if self.try_lock(offset):
            self.unlock(offset)
            return False
        return True

    @contextmanager
    def exclusive(self, offset: int) -> Iterator[None]:
        """Hold the lock at ``offset``, waiting for it (resizes take milliseconds)."""
        fcntl.lockf(self.fd, fcntl.LOCK_EX, 1, offset)
        try:
            yield
        finally:
            self.unlock(offset)

    def reserve(self) -> None:
        """Hold the disk's reserve for deletes: allocated blocks in this file, if the disk has them.

        The file is extended to ``SPARE_BYTES``; the map takes those blocks
        (:meth:`release_reserve`) when it must grow and the disk is full, so
        that a map that filled up between two growths still has room for
        deletes. Otherwise at least the first block (the agreed size) is
        backed, so that recording a size never fails for lack of space; if
        not even that can be, DiskStoreFullError. Holds the resize lock.
        """
        try:
            os.posix_fallocate(self.fd, 0, SPARE_BYTES)
            return
        except OSError as exc:
            if exc.errno not in NO_SPACE:
                return  # a filesystem that cannot allocate ahead
        try:
            os.posix_fallocate(self.fd, 0, 8)
        except OSError as exc:
            if exc.errno in NO_SPACE:
                raise DiskStoreFullError(
                    f"the disk store is full: the disk cannot allocate its lock file ({os_error(exc)})"
                ) from exc

    def release_reserve(self) -> bool:
        """Free the reserve's blocks for the map to take; whether there were any. Holds the resize lock."""
        if os.fstat(self.fd).st_size <= PAGE_SIZE:
            return False
        os.ftruncate(self.fd, PAGE_SIZE)  # POSIX locks do not depend on the file's size
        return True

    def agreed_size(self) -> int:
        return int.from_bytes(os.pread(self.fd, 8, 0).ljust(8, b"\0"), "big")

    def agree(self, size: int) -> None:
        os.pwrite(self.fd, size.to_bytes(8, "big"), 0)
