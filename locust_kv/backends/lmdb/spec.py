"""The disk backend's options: the spec, their validation, and the store's path.

Imports no LMDB: option parsing, ``scope_of`` and the check that a backup
does not overwrite a store (:func:`is_store_file`) stay light.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ...errors import DiskPathError, InvalidOptionsError
from ..base import Scope, check_quota, reject_unknown
from ..filesystems import check_local

if TYPE_CHECKING:
    from .backend import DiskBackend

__all__ = ["DEFAULT_MAP_SIZE", "DEFAULT_PATH", "SCOPE", "DiskSpec", "configure", "is_store_file"]

SCOPE: Final[Scope] = "host"
"""Who shares a store of this backend (see ``backends.base.Scope``)."""

DEFAULT_PATH: Final = ".locust-kv.lmdb"
"""The store's file when ``open_kv`` gets no ``path``: in the working directory."""

DEFAULT_MAP_SIZE: Final = 8 << 20
"""The initial map: 8 MiB. Every byte of the map is allocated on disk, so it starts small and doubles."""

MIN_MAP_SIZE: Final = 1 << 16
DEFAULT_MAX_READERS: Final = 126

MIN_CAP: Final = 1 << 20
"""The smallest ``max_map_size``: in a smaller map, the room kept for deletes (a quarter of it) is not
enough for LMDB to rebalance the key index as keys go, and deletes in a full store failed."""


@dataclass(frozen=True)
class DiskSpec:
    """Options of the disk backend. Two specs with the same path denote one store."""

    path: str
    track_keys: bool = True
    durable: bool = False
    writemap: bool = True
    map_size: int = DEFAULT_MAP_SIZE
    max_map_size: int | None = None
    max_readers: int = DEFAULT_MAX_READERS
    max_keys: int | None = None
    max_bytes: int | None = None
    kind: str = "disk"
    scope: Scope = SCOPE

    @property
    def identity(self) -> tuple[str, str]:
        return ("disk", self.path)

    def describe(self) -> dict[str, object]:
        return {
            "backend": "disk",
            "path": self.path,
            "track_keys": self.track_keys,
            "durable": self.durable,
            "writemap": self.writemap,
            "map_size": self.map_size,
            "max_map_size": self.max_map_size,
            "max_readers": self.max_readers,
            "max_keys": self.max_keys,
            "max_bytes": self.max_bytes,
        }

    def create(self) -> DiskBackend:
        from .backend import DiskBackend  # the engine and py-lmdb load when a store opens

        return DiskBackend(self)


def configure(
    *,
    path: object = None,
    track_keys: object = True,
    durable: object = False,
    writemap: object = True,
    map_size: object = DEFAULT_MAP_SIZE,
    max_map_size: object = None,
    max_readers: object = DEFAULT_MAX_READERS,
    max_keys: object = None,
    max_bytes: object = None,
    **options: object,
) -> DiskSpec:
    """The disk backend's spec: validate the options and resolve the path.

    Options:
        path: the store's file (default ``.locust-kv.lmdb`` in the working
            directory); every process that opens the same real path shares it.
        track_keys: keep the key index that makes ``random_key()`` O(1);
            without it, sampling walks the keys.
        durable: fsync every commit (LMDB ``sync=True, metasync=True``).
            Off by default: a killed process loses nothing committed, an OS
            crash or power loss may lose recent commits or, with
            ``writemap``, damage the file.
        writemap: write through a writable memory map (about 3x faster
            writes). On by default. Every byte of the map is allocated on
            disk before it is mapped, so a full disk raises
            DiskStoreFullError with or without it.
        map_size: the initial map in bytes (rounded up to whole pages),
            8 MiB by default; allocated on disk at once, then doubled as
            needed.
        max_map_size: the largest the map may grow to; None: the disk's free space.
        max_readers: LMDB reader slots, shared by every process (only the
            first process to open the store sets it).
        max_keys, max_bytes: this handle's quota (None or 0: none): a write
            that would store more entries, or make the entries' database
            take more than ``max_bytes`` of pages, raises QuotaExceededError.

    Creates the path's missing directories. Raises DiskPathError for a path
    that is a directory or whose directory cannot be created,
    UnsafeFilesystemError for a path on a network filesystem, and
    InvalidOptionsError for unknown options or values of the wrong type.
    """
    reject_unknown("disk", options)
    flags: dict[str, bool] = {}
    for name, value in (("track_keys", track_keys), ("durable", durable), ("writemap", writemap)):
        if not isinstance(value, bool):
            raise InvalidOptionsError(f"{name} must be a bool, not {type(value).__name__}")
        flags[name] = value
    size = _size_option("map_size", map_size)
    cap = None if max_map_size is None else _size_option("max_map_size", max_map_size, MIN_CAP)
    if cap is not None and cap < size:
        raise InvalidOptionsError(f"max_map_size ({cap}) must be at least map_size ({size})")
    if type(max_readers) is not int or not 1 <= max_readers <= 65_536:
        raise InvalidOptionsError("max_readers must be an int between 1 and 65536")
    quota_keys, quota_bytes = check_quota("max_keys", max_keys), check_quota("max_bytes", max_bytes)
    resolved = _resolve_path(path)
    check_local(resolved)
    return DiskSpec(
        path=resolved,
        track_keys=flags["track_keys"],
        durable=flags["durable"],
        writemap=flags["writemap"],
        map_size=size,
        max_map_size=cap,
        max_readers=max_readers,
        max_keys=quota_keys,
        max_bytes=quota_bytes,
    )


def _size_option(name: str, value: object, least: int = MIN_MAP_SIZE) -> int:
    if type(value) is not int:
        raise InvalidOptionsError(f"{name} must be an int number of bytes, not {type(value).__name__}")
    if value < least or value > 1 << 50:
        raise InvalidOptionsError(f"{name} must be between {least} and {1 << 50} bytes")
    page = os.sysconf("SC_PAGE_SIZE")
    return -(-value // page) * page


def _resolve_path(path: object) -> str:
    """The store's absolute real path; its directory is created."""
    if path is None:
        path = DEFAULT_PATH
    try:
        if not isinstance(path, (str, bytes, os.PathLike)):
            raise TypeError
        raw: str | bytes = os.fspath(path)  # TypeError too when __fspath__ returns neither str nor bytes
    except TypeError:
        raise InvalidOptionsError(f"path must be a str or path-like, not {type(path).__name__}") from None
    if not isinstance(raw, str):
        raise InvalidOptionsError("path must be a str or a path-like of str, not bytes")
    if not raw or "\0" in raw:
        raise DiskPathError("the disk store path is empty or contains a NUL character")
    full = os.path.abspath(raw)
    if os.path.isdir(full):
        raise DiskPathError(f"{full} is a directory; the disk store is a file (give a file name inside it)")
    try:
        os.makedirs(os.path.dirname(full), exist_ok=True)
    except OSError as exc:
        raise DiskPathError(f"cannot create the directory of the disk store {full}: {(exc.strerror or str(exc))}") from exc
    real = os.path.realpath(full)
    if os.path.isdir(real):
        raise DiskPathError(f"{full} leads to a directory; the disk store is a file")
    _refuse_special_files(real)
    return real


_SIDE_SUFFIXES: Final = ("", "-lock", "-kvlock")
"""The store's file and the two files beside it (LMDB's lock file, locust_kv's side file)."""


def _refuse_special_files(real: str) -> None:
    """DiskPathError if the store's file or a side file exists and is not a regular file.

    Checked with ``stat`` only: opening a FIFO blocks until a writer comes,
    and a device or socket is no place for a store. Missing files are fine
    (they are created); a directory in a side file's place is left to LMDB,
    whose error (DiskStoreOpenError) says the lock file cannot be made.
    """
    for suffix in _SIDE_SUFFIXES:
        path = real + suffix
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise DiskPathError(f"cannot inspect the disk store file {path}: {(exc.strerror or str(exc))}") from exc
        if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
            kind = _FILE_KINDS.get(stat.S_IFMT(mode), "a special file")
            raise DiskPathError(f"the disk store file is not a regular file: {path} is {kind}")


_FILE_KINDS: Final = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def is_store_file(path: str) -> bool:
    """Whether ``path`` is a disk store's file or one of its side files (a store beside which ``-kvlock`` exists).

    For writers of other files (a backup, an export), so that they never
    replace a store under its users. A store that never ran in locust_kv
    has no ``-kvlock`` and is not recognised.
    """
    for suffix in _SIDE_SUFFIXES:
        if path.endswith(suffix) and os.path.exists(path[: len(path) - len(suffix)] + "-kvlock"):
            return True
    return False
