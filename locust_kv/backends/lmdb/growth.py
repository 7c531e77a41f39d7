"""Map growth: how big the map may be, and the disk blocks behind it.

The map starts at ``map_size`` (8 MiB by default) and doubles when a write
needs more room, up to ``max_map_size`` and the free disk space. Every byte
of the map, and LMDB's lock file, is allocated on disk (``posix_fallocate``)
before it is mapped, so a write through the map never needs a block the disk
may not have: a full disk is DiskStoreFullError, never SIGBUS. A growth step
is cut to what the disk can allocate. Once the map cannot grow any more,
writes that add data may not fill its last :func:`reserve_bytes` (1/64 of
it, at least 1 MiB, at most 1/4), so that deletes, ``clear()`` and the end
of a restore always find pages; the side file holds 1 MiB of disk that the
map takes if the disk fills up between two growths.

These are functions of the spec, the sizes and the files; the engine
(:meth:`~locust_kv.backends.lmdb.engine.Engine._resize`) decides when to
call them, under the side file's resize lock.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Final

import lmdb

from ...errors import DiskStoreFullError
from .errors import NO_SPACE, os_error
from .layout import PAGE_SIZE
from .locks import real_sleep

if TYPE_CHECKING:
    from .spec import DiskSpec

__all__ = [
    "at_final_size",
    "disk_short_of_reserve",
    "file_size",
    "fill_limit_pages",
    "next_map_size",
    "quiesce",
    "reserve_bytes",
    "reserve_lock_file",
    "reserve_space",
    "set_mapsize",
]

RESERVE_MIN: Final = 1 << 20
"""The least reserve kept for deletes in a map that cannot grow (see :func:`reserve_bytes`)."""


def reserve_bytes(map_size: int) -> int:
    """The end of the map kept for deletes once it cannot grow: 1/64 of it, at least 1 MiB, at most 1/4."""
    return min(max(RESERVE_MIN, map_size // 64), map_size // 4)


def fill_limit_pages(map_size: int) -> int:
    """How many pages writes that add data may fill when the map is at its limit."""
    return (map_size - reserve_bytes(map_size)) // PAGE_SIZE


def disk_short_of_reserve(path: str, map_size: int) -> bool:
    """Whether the store's filesystem has less free space than the map's reserve (False if it cannot tell)."""
    try:
        vfs = os.statvfs(os.path.dirname(path))
    except OSError:
        return False
    return vfs.f_bavail * vfs.f_frsize < reserve_bytes(map_size)


def at_final_size(spec: DiskSpec, map_size: int, clamped: bool) -> bool:
    """Whether the map just reached its last size: ``max_map_size``, or the disk's room (``clamped``, or less
    free space than the reserve). Growth retried when a write is refused corrects a wrong guess."""
    cap = spec.max_map_size
    if clamped or (cap is not None and map_size >= cap):
        return True
    return disk_short_of_reserve(spec.path, map_size)


def file_size(spec: DiskSpec) -> int:
    """The data file's size with ``writemap`` (the map may never be smaller), else 0."""
    try:
        return os.stat(spec.path).st_size if spec.writemap else 0
    except FileNotFoundError:
        return 0


def next_map_size(spec: DiskSpec, current: int, at_least: int = 0) -> tuple[int, bool]:
    """Double the map (or make it ``at_least``), within ``max_map_size`` and the disk's free space.

    Raises DiskStoreFullError if it cannot grow.

    Also says whether a limit cut the step short (then the map reaches its final size).
    """
    target = at_least or current * 2
    limit = "its size"
    if spec.max_map_size is not None and target > spec.max_map_size:
        target, limit = spec.max_map_size, f"max_map_size={spec.max_map_size}"
    stat = os.statvfs(os.path.dirname(spec.path))
    room = os.stat(spec.path).st_blocks * 512 + stat.f_bavail * stat.f_frsize
    if target > room:
        target, limit = room, f"the free disk space ({stat.f_bavail * stat.f_frsize} bytes)"
    target -= target % PAGE_SIZE
    if target <= current:
        raise DiskStoreFullError(f"the disk store is full: its map of {current} bytes cannot grow beyond {limit}")
    return target, target < (at_least or current * 2)


def reserve_space(path: str, wanted: int, needed: int) -> int:
    """Allocate disk blocks for the first ``wanted`` bytes of the data file, or as many as fit, down to ``needed``.

    Returns the size now backed (whole pages, at least ``needed``); the
    file is extended to it. The map is never larger than what is backed,
    so a write through the map (``writemap``) never needs a new block and a
    full disk is never a SIGBUS, and a ``pwrite`` at commit (without
    ``writemap``) never runs out of space half-way. Blocks already
    allocated are kept, so this fills the holes of a sparse file (one an
    older version made) and costs nothing on a file already backed.
    Raises DiskStoreFullError, with the OS error chained, when not even
    ``needed`` bytes can be backed. On a filesystem that cannot allocate
    ahead (``posix_fallocate`` fails with anything but a lack of space)
    the file stays sparse, as before, and ``wanted`` is returned.
    """
    wanted = -(-wanted // PAGE_SIZE) * PAGE_SIZE
    needed = min(-(-needed // PAGE_SIZE) * PAGE_SIZE, wanted)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        return wanted  # LMDB's own open reports it
    try:
        size = wanted
        while True:
            try:
                os.posix_fallocate(fd, 0, size)
                return size
            except OSError as exc:
                if exc.errno not in NO_SPACE:
                    return wanted
                if size <= needed:
                    raise DiskStoreFullError(
                        f"the disk store is full: the disk cannot allocate the {needed} bytes its map needs "
                        f"({os_error(exc)})"
                    ) from exc
                # Try what the free space says fits, else a smaller step, never below what is needed.
                vfs = os.fstatvfs(fd)
                room = os.fstat(fd).st_blocks * 512 + vfs.f_bavail * vfs.f_frsize
                step = max(PAGE_SIZE, (size - needed) // 4)
                size = max(needed, min(room, size - step) // PAGE_SIZE * PAGE_SIZE)
    finally:
        os.close(fd)


def reserve_lock_file(path: str, max_readers: int) -> None:
    """Create LMDB's lock file with its disk space allocated, when it does not exist yet.

    LMDB creates ``<path>-lock`` as a sparse file and writes its reader
    table through a shared memory map; on a full disk the first write to a
    page with no block behind it kills the process with SIGBUS, whatever
    ``writemap`` says. Allocating the file first turns that into
    DiskStoreFullError at ``open_kv``. The size is LMDB's own (64-byte
    reader slots after a 128-byte header), so LMDB finds the file as it
    would have made it. Only a file created here is touched: closing a
    descriptor of a lock file that an environment of this process holds
    would drop that environment's POSIX locks on it.
    """
    try:
        fd = os.open(path + "-lock", os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except OSError:
        return  # it exists (LMDB handles it), or LMDB will report why it cannot be made
    try:
        os.posix_fallocate(fd, 0, max_readers * 64 + 128)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            os.close(fd)
            fd = -1
            os.unlink(path + "-lock")
            raise DiskStoreFullError(f"no room on the disk for the store's lock file: {os_error(exc)}") from exc
        # A filesystem without fallocate: LMDB makes the file as usual.
    finally:
        if fd >= 0:
            os.close(fd)


def set_mapsize(env: lmdb.Environment, size: int) -> None:
    """``env.set_mapsize(size)``, waiting out write transactions of other OS threads.

    py-lmdb refuses to resize while any thread has a write transaction open
    and leaves the environment usable; a failed remap leaves it unusable
    (``info()`` fails too), and that error is raised. Greenlets never get
    here with a write transaction open: none spans a switch.
    """
    for _ in range(2_000):
        try:
            env.set_mapsize(size)
            return
        except lmdb.Error:
            env.info()  # raises if the environment is no longer usable
            real_sleep(0.0005)
    env.set_mapsize(size)


def quiesce(env: lmdb.Environment) -> None:
    """Wait for what other threads began before thread mode (unlocked) to end: microseconds, usually."""
    real_sleep(0.02)
    me = str(os.getpid())
    for _ in range(1_000):
        readers = [line.split() for line in env.readers().splitlines()[1:]]
        if not any(fields[:1] == [me] and fields[-1] != "-" for fields in readers):
            return
        real_sleep(0.001)
