"""Which filesystem a path is on, to refuse those where LMDB is unsafe.

LMDB shares a store between processes through a memory map and POSIX locks
on the file. On a network filesystem (NFS, SMB/CIFS, 9p, CephFS, sshfs...) the
map is not kept coherent between hosts and the locks may not reach other
hosts at all, so two hosts opening one file can each see their own writes or
corrupt it (LMDB's own documentation says not to use it there). The disk
backend refuses such a path with UnsafeFilesystemError; a store shared by
several hosts belongs on the redis backend.

The type comes from ``/proc/self/mountinfo`` (Linux): the mount whose mount
point is the longest prefix of the path's real directory. Where that file
does not exist (other systems), nothing is refused.
"""

from __future__ import annotations

import os
from typing import Final

from ..errors import UnsafeFilesystemError

__all__ = ["NETWORK_FILESYSTEMS", "check_local", "filesystem_of"]

MOUNTINFO: Final = "/proc/self/mountinfo"

NETWORK_FILESYSTEMS: Final = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "afs", "ncpfs", "coda",
        "glusterfs", "fuse.glusterfs", "fuse.sshfs", "sshfs", "fuse.rclone", "fuse.s3fs", "davfs", "fuse.davfs",
    }
)  # fmt: skip
"""Filesystem types (as the kernel names them) where LMDB's map and locks are not safe across hosts."""


def filesystem_of(path: str, mountinfo: str = MOUNTINFO) -> str | None:
    """The type of the filesystem holding ``path`` (an existing directory or file), or None when unknown."""
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as lines:
            mounts = [_parse(line) for line in lines]
    except OSError:
        return None
    target = os.path.realpath(path)
    best: tuple[int, str] | None = None
    for mount in mounts:
        if mount is None:
            continue
        point, fstype = mount
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        # Later lines are mounted over earlier ones at the same point: ">=" keeps the last.
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), fstype)
    return None if best is None else best[1]


def _parse(line: str) -> tuple[str, str] | None:
    """(mount point, filesystem type) of one mountinfo line; see proc(5)."""
    left, separator, right = line.partition(" - ")
    fields = left.split()
    if not separator or len(fields) < 5 or not right.split():
        return None
    return _unescape(fields[4]), right.split()[0]


def _unescape(field: str) -> str:
    # The kernel writes space, tab, newline and backslash in mount points as octal escapes.
    for escaped, plain in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(escaped, plain)
    return field


def check_local(path: str, mountinfo: str = MOUNTINFO) -> None:
    """Raise UnsafeFilesystemError when the directory of the store file ``path`` is on a network filesystem."""
    fstype = filesystem_of(os.path.dirname(path) or ".", mountinfo)
    if fstype in NETWORK_FILESYSTEMS:
        raise UnsafeFilesystemError(
            f"the disk store {path} is on a {fstype} filesystem, where LMDB's memory map and locks are not "
            "safe between hosts; put it on a local disk, or share a store between hosts with --kv-backend redis"
        )
