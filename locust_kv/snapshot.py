"""Snapshots: the file format, and backup and restore of a store through it.

One format serves both backends, so a memory store's backup seeds a disk
store and back. All numbers are little-endian, so a file is portable across
machines. A file is laid out as::

    header   magic b"\\x89LKV\\r\\n\\x1a\\n" (8 bytes), format version (u16),
             header size (u16), flags (u32, 0), entries (u64),
             data bytes (u64, key + value lengths summed),
             created at (i64, ns since the Unix epoch),
             metadata length (u16), metadata (UTF-8 JSON object:
             source_backend, serialization, created_by),
             CRC-32 of all the header bytes before it (u32)
    blocks   tag b"BLK\\0" (or b"BLKX" in version 2), entry count n >= 1 (u32),
             payload size (u32), n (key length, value length) pairs (u32 each),
             with b"BLKX" n expiries (i64 each, Unix milliseconds, 0: none),
             payload: key 0, value 0, key 1, value 1, ...
    trailer  tag b"END\\0", entries (u64), data bytes (u64),
             SHA-256 of every byte from the end of the header up to here (32 bytes)

Keys ascend strictly in byte order across the whole file. A file in which
no entry expires is version 1, byte for byte what earlier releases wrote
and read; one with an expiring entry is version 2, so that a release that
cannot keep expiries refuses it instead of restoring the entries forever. The magic catches
files of another format and the usual transfer damage (a text-mode copy
rewrites ``\\r\\n``); the header checksum lets restore trust the header's
figures for its budget check before reading further; the trailer's digest
and figures catch any altered byte and any truncation. A reader refuses a
version it does not know rather than guess.

Restore streams the blocks into the backend's all-or-nothing ``replace_all``
in slices of a few thousand entries (a block is read and checked whole, in
steps with pauses between, before its first slice is handed over), and
holds each slice back until the next one is read, so the trailer is
verified before the last slice is handed over: a damaged file fails the
restore before the store changes.

Failures map to the catalogue by cause, the same way for every file this
module touches: permission (``EACCES``, ``EPERM``, ``EROFS``) is
SnapshotPermissionError; a missing file to read (``ENOENT``, ``ENOTDIR``)
is SnapshotNotFoundError; a device fault (``ENOSPC``, ``EDQUOT``, ``EFBIG``,
``EIO``) is SnapshotIOError; any other failure to create, fill or rename a
backup's temp file is SnapshotExportError, and any other failure to read is
SnapshotIOError, except a directory where a file should be, which is
SnapshotReadError. Contents that are not a valid snapshot are
SnapshotReadError.

This module is over 500 lines: the format's reader and writer and the
backup and restore that use them change together (a format version touches
all of them); the cooperative offloading is in :mod:`locust_kv._cooperative`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import socket
import stat
import struct
import sys
import time
import zlib
from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import accumulate, chain, islice
from operator import lt
from typing import IO, TYPE_CHECKING, Any, Final

import orjson

from ._cooperative import offload, pause
from ._version import __version__
from .backends.base import MAX_KEY_BYTES, Batch
from .errors import (
    BackupOptionsRequiredError,
    KVError,
    RestoreOptionsRequiredError,
    SnapshotBudgetExceededError,
    SnapshotExportError,
    SnapshotIOError,
    SnapshotMismatchError,
    SnapshotNotFoundError,
    SnapshotPermissionError,
    SnapshotReadError,
    UnexpectedStoreOutputError,
)
from .results import BackupSummary, RestoreSummary

if TYPE_CHECKING:
    from .backends.base import Backend

__all__ = [
    "DEFAULT_SNAPSHOT_FILE",
    "FORMAT_VERSION",
    "Progress",
    "SnapshotInfo",
    "SnapshotReader",
    "SnapshotWriter",
    "backup",
    "check_backup_options",
    "check_restore_options",
    "inspect",
    "map_os_error",
    "restore",
    "write_file",
    "write_snapshot",
]

DEFAULT_SNAPSHOT_FILE: Final = "locust-kv.snapshot"
"""The file ``backup`` and ``restore`` use when given none, in the working directory."""

FORMAT_VERSION: Final = 2
"""The newest version this module writes (only for files with an expiring entry) and reads."""
READ_VERSIONS: Final = (1, 2)
MAGIC: Final = b"\x89LKV\r\n\x1a\n"

_HEADER: Final = struct.Struct("<8sHHIQQqH")  # up to and including the metadata length
_CRC: Final = struct.Struct("<I")
_BLOCK: Final = struct.Struct("<4sII")
_TRAILER: Final = struct.Struct("<4sQQ")
_BLOCK_TAG: Final = b"BLK\x00"
_EXPIRY_BLOCK_TAG: Final = b"BLKX"
_TRAILER_TAG: Final = b"END\x00"
_DIGEST_SIZE: Final = 32
_MAX_BLOCK_ENTRIES: Final = 1 << 20

BLOCK_BYTES: Final = 4 << 20
"""A block's payload stops growing past this size (unless one entry is larger)."""

STEP_ENTRIES: Final = 1_000
"""Entries read and checked, or written, in one step of a restore or backup: about a millisecond of work.

Steps are separated by :func:`~._cooperative.pause`, so a restore or backup
never holds a greenlet hub for long (issue 14: 10 ms at most). A pause runs
the hub's timers only once 5 ms have passed since it last did, so other
greenlets can wait 5 ms plus one step: a step must stay well under 5 ms
(1,000 entries: 1-1.5 ms to check, 2 ms for the disk backend to write)."""

STEP_BYTES: Final = 512 << 10
"""Bytes read, hashed, sliced or written in one step (a step may hold one larger entry)."""

_LENGTHS_STEP: Final = 65_536
"""Entries' lengths summed and range-checked in one step (a fraction of a millisecond)."""

BEST_EFFORT_WARNING: Final = (
    "concurrent writes were allowed: entries written while the backup ran may or may not be in it, "
    "so it is not a point-in-time copy"
)

Progress = Callable[[int], None]
"""Called with the number of entries handled so far, after each batch written or slice restored."""

_LITTLE_ENDIAN: Final = sys.byteorder == "little"


# ---------------------------------------------------------------------------
# Errors by cause.

_PERMISSION: Final = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_DEVICE: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})
_MISSING: Final = frozenset({errno.ENOENT, errno.ENOTDIR})


def map_os_error(exc: OSError, doing: str, path: str | os.PathLike[str], writing: bool) -> KVError:
    """The catalogued error for ``exc``, raised while ``doing`` something to ``path`` (see the module docstring).

    ``writing`` is True for a file being created, False for one being read.
    Raise it ``from exc``.
    """
    code = exc.errno
    if code in _PERMISSION:
        cls: type[KVError] = SnapshotPermissionError
    elif code in _DEVICE:
        cls = SnapshotIOError
    elif writing:
        cls = SnapshotExportError
    elif code in _MISSING:
        cls = SnapshotNotFoundError
    elif code == errno.EISDIR:
        cls = SnapshotReadError
    else:
        cls = SnapshotIOError
    reason = exc.strerror or str(exc)
    code_name = errno.errorcode.get(code, str(code)) if code else "no errno"
    return cls(f"{doing} {os.fspath(path)}: {reason} ({code_name})")


# ---------------------------------------------------------------------------
# Options.


def _check_path(file_name: object, error: type[KVError]) -> str | os.PathLike[str]:
    if file_name is None:
        return DEFAULT_SNAPSHOT_FILE
    if not isinstance(file_name, (str, os.PathLike)):
        raise error(f"file_name must be a str or path-like, not {type(file_name).__name__}")
    try:
        text = os.fspath(file_name)
    except TypeError as exc:  # a path-like whose __fspath__ returns neither str nor bytes
        raise error(f"file_name's __fspath__ must return a str: {exc}") from None
    if not isinstance(text, str):
        raise error(f"file_name must name a path as str, not {type(text).__name__}")
    if not text or "\x00" in text:
        raise error("file_name must be a non-empty path without NUL characters")
    return file_name


def check_backup_options(file_name: object, allow_concurrent_writes: object) -> str | os.PathLike[str]:
    """The path to back up to; BackupOptionsRequiredError for options ``backup`` cannot use."""
    path = _check_path(file_name, BackupOptionsRequiredError)
    if not isinstance(allow_concurrent_writes, bool):
        raise BackupOptionsRequiredError(
            f"allow_concurrent_writes must be a bool, not {type(allow_concurrent_writes).__name__}"
        )
    return path


def check_restore_options(file_name: object, max_entries: object, max_bytes: object) -> str | os.PathLike[str]:
    """The path to restore from; RestoreOptionsRequiredError for options ``restore`` cannot use."""
    path = _check_path(file_name, RestoreOptionsRequiredError)
    for name, cap in (("max_entries", max_entries), ("max_bytes", max_bytes)):
        if type(cap) is not int and (not isinstance(cap, int) or isinstance(cap, bool)):
            raise RestoreOptionsRequiredError(f"{name} must be an int (0 for no cap), not {type(cap).__name__}")
        cap = int.__index__(cap)  # an int subclass counts by its value, whatever its methods say
        if cap < 0:
            raise RestoreOptionsRequiredError(f"{name} must be >= 0 (0 for no cap), not {cap}")
    return path


# ---------------------------------------------------------------------------
# Writing.


def _expiries_bytes(expiries: list[int]) -> bytes:
    try:
        raw = array("q", expiries)
    except (OverflowError, TypeError):
        raise UnexpectedStoreOutputError("a backup batch holds an expiry that is not a 64-bit integer") from None
    if not _LITTLE_ENDIAN:
        raw.byteswap()
    return raw.tobytes()


def _lengths_bytes(lengths: array[int]) -> bytes:
    if not _LITTLE_ENDIAN:
        lengths = array("I", lengths)
        lengths.byteswap()
    return lengths.tobytes()


class SnapshotWriter:
    """Writes a snapshot to an open binary file positioned at its start.

    Call :meth:`add` with batches of ``(key, value)`` bytes pairs in strictly
    ascending key order (the caller's promise; backends and the importer
    keep it), then :meth:`finish`, which completes the file and patches the
    header's figures. The file must be seekable.
    """

    def __init__(self, out: IO[bytes], source_backend: str, serialization: str) -> None:
        self._out = out
        self._digest = hashlib.sha256()
        self.entries = 0
        self.data_bytes = 0
        self.expiring = 0
        """Entries added with an expiry: the file is version 2 when there is any."""
        self.created_at_ns = time.time_ns()
        self._metadata = orjson.dumps(
            {"source_backend": source_backend, "serialization": serialization, "created_by": _created_by()},
            option=orjson.OPT_SORT_KEYS,
        )
        out.write(self._header())
        self.file_bytes = _HEADER.size + len(self._metadata) + _CRC.size

    def _header(self) -> bytes:
        size = _HEADER.size + len(self._metadata) + _CRC.size
        head = _HEADER.pack(
            MAGIC,
            2 if self.expiring else 1,
            size,
            0,
            self.entries,
            self.data_bytes,
            self.created_at_ns,
            len(self._metadata),
        ) + self._metadata
        return head + _CRC.pack(zlib.crc32(head))

    def add(self, batch: list[tuple[bytes, bytes]], expiries: list[int] | None = None) -> None:
        """Append ``batch`` (ascending keys, each after every key already added) as one or more blocks.

        ``expiries``: None, or one per entry: its expiry in Unix milliseconds, 0 for none.
        """
        for _ in self.add_in_steps(batch, expiries):
            pass

    def add_in_steps(self, batch: list[tuple[bytes, bytes]], expiries: list[int] | None = None) -> Iterator[None]:
        """As :meth:`add`, yielding between steps of at most :data:`STEP_ENTRIES` entries and about
        :data:`STEP_BYTES` bytes, so that the caller can pause between them; the blocks are the same.

        Stopping before the end leaves the file with a partial block: only for a file being abandoned.
        """
        if not batch:
            return
        if expiries is not None:
            if len(expiries) != len(batch):
                raise UnexpectedStoreOutputError("a backup batch's expiries do not match its entries")
            if not any(expiries):
                expiries = None
        lengths = array("I")
        total = 0
        for start in range(0, len(batch), STEP_ENTRIES):
            if start:
                yield
            piece = array("I", map(len, chain.from_iterable(batch[start : start + STEP_ENTRIES])))
            total += sum(piece)
            lengths.extend(piece)
        if total <= BLOCK_BYTES:
            yield from self._block_in_steps(batch, lengths, total, expiries)
            return
        # Split so that no block's payload (which a reader holds whole) grows without bound.
        ends = list(accumulate(map(int.__add__, lengths[0::2], lengths[1::2])))
        start = 0
        while start < len(batch):
            base = ends[start - 1] if start else 0
            stop = max(bisect_right(ends, base + BLOCK_BYTES), start + 1)
            yield
            part = None if expiries is None else expiries[start:stop]
            yield from self._block_in_steps(batch[start:stop], lengths[2 * start : 2 * stop], ends[stop - 1] - base, part)
            start = stop

    def _block_in_steps(
        self, batch: list[tuple[bytes, bytes]], lengths: array[int], total: int, expiries: list[int] | None
    ) -> Iterator[None]:
        """Write one block: its header, lengths and expiries, then its payload a step at a time (yielding between)."""
        count = len(batch)
        raw_lengths = _lengths_bytes(lengths)
        raw_expiries = b""
        if expiries is not None and any(expiries):
            raw_expiries = _expiries_bytes(expiries)
            self.expiring += count - expiries.count(0)
        self._put(_BLOCK.pack(_EXPIRY_BLOCK_TAG if raw_expiries else _BLOCK_TAG, count, total))
        with memoryview(raw_lengths) as view:
            for at in range(0, len(view), STEP_BYTES):
                if at:
                    yield
                self._put(view[at : at + STEP_BYTES])
        if raw_expiries:
            yield
            self._put(raw_expiries)
        # Where each entry's payload ends, when the payload needs more than one step by its bytes.
        ends = list(accumulate(map(int.__add__, lengths[0::2], lengths[1::2]))) if total > STEP_BYTES else None
        start = 0
        while start < count:
            stop = min(start + STEP_ENTRIES, count)
            if ends is not None:
                base = ends[start - 1] if start else 0
                stop = max(start + 1, min(stop, bisect_right(ends, base + STEP_BYTES)))
            if start or len(raw_lengths) > STEP_BYTES:
                yield
            self._put(b"".join(chain.from_iterable(batch[start:stop])))
            start = stop
        self.entries += count
        self.data_bytes += total
        self.file_bytes += _BLOCK.size + len(raw_lengths) + len(raw_expiries) + total

    def _put(self, piece: bytes | memoryview) -> None:
        self._digest.update(piece)
        self._out.write(piece)

    def finish(self) -> int:
        """Write the trailer, patch the header's figures and flush; the file's size in bytes."""
        tail = _TRAILER.pack(_TRAILER_TAG, self.entries, self.data_bytes)
        self._digest.update(tail)
        self._out.write(tail + self._digest.digest())
        self._out.seek(0)
        self._out.write(self._header())
        self._out.flush()
        self.file_bytes += len(tail) + _DIGEST_SIZE
        return self.file_bytes


def _created_by() -> str:
    return f"locust-kv {__version__}"


_HOST: Final = socket.gethostname().replace("/", "_")


def _temp_name(name: str, token: str) -> str:
    """The temp file of a write to ``name``: it names the host and process, so leftovers of dead writers are found."""
    return f".{name}.{_HOST}.{os.getpid()}.{token}.tmp"


def _remove_dead_temp_files(directory: str, name: str) -> None:
    """Remove the temp files of earlier writes to ``name`` whose process, on this host, is gone (a kill -9).

    Only files named by :func:`_temp_name` for this host are considered; a
    writer on another host sharing the directory is never touched. Best
    effort: a file that cannot be listed or removed stays.
    """
    start = f".{name}.{_HOST}."
    try:
        entries = os.listdir(directory)
    except OSError:
        return
    for entry in entries:
        if not (entry.startswith(start) and entry.endswith(".tmp")):
            continue
        pid_text = entry[len(start) : -len(".tmp")].split(".", 1)[0]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        try:
            os.unlink(os.path.join(directory, entry))
        except OSError:
            pass


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, owned by another user
    return True


_KINDS: Final = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def check_target(path: str) -> None:
    """Refuse to replace anything at ``path`` but a regular file that is not a live disk store's own file.

    The write renames a temp file over ``path``: over a device node, a FIFO
    or a link that would replace the node or the link itself (a backup to
    /dev/null as root replaced the device), and over a store's LMDB file or
    its side files it would destroy the store under its users. Raises
    SnapshotExportError and changes nothing.
    """
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise map_os_error(exc, "cannot check the target", path, writing=True) from exc
    if not stat.S_ISREG(found.st_mode):
        kind = next((what for test, what in _KINDS if test(found.st_mode)), "not a regular file")
        raise SnapshotExportError(
            f"the target {path} is {kind}: a snapshot or export replaces only a regular file (or creates one); "
            "nothing was written. Give the real file's path; the command line writes to standard output without -o"
        )
    from .backends.lmdb.spec import is_store_file

    if is_store_file(path):
        raise SnapshotExportError(f"the target {path} is a file of a disk store; nothing was written. Choose another path")


class _AtomicFile:
    """A temp file beside ``path`` that replaces ``path`` only if the ``with`` block succeeds.

    ``with _AtomicFile(path) as file:`` gives the temp file, opened for
    buffered binary writing. On a clean exit it is flushed, fsynced, renamed
    over ``path``, and the directory is fsynced, so after a crash the path
    holds either the old file or the whole new one. On any exception the
    temp file is removed; an OSError is raised as its catalogued error.
    Missing directories are created.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.directory, name = os.path.split(self.path)
        check_target(self.path)
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as exc:
            raise map_os_error(exc, "cannot create the directory", self.directory, writing=True) from exc
        _remove_dead_temp_files(self.directory, name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        while True:
            self.temp_path = os.path.join(self.directory, _temp_name(name, secrets.token_hex(4)))
            try:
                # 0o666 under the umask, as for any file the user creates; O_EXCL never reuses a name.
                fd = os.open(self.temp_path, flags, 0o666)
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise map_os_error(exc, "cannot create a temp file in", self.directory, writing=True) from exc
        self.file: IO[bytes] = open(fd, "wb", buffering=1 << 20)  # noqa: SIM115 - closed on exit

    def __enter__(self) -> IO[bytes]:
        return self.file

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is not None:
            self._abort()
            if isinstance(exc, OSError):
                raise map_os_error(exc, "cannot write the temp file", self.temp_path, writing=True) from exc
            return
        try:
            self.file.flush()
            offload(os.fsync, self.file.fileno())
            self.file.close()
        except OSError as error:
            self._abort()
            raise map_os_error(error, "cannot write the temp file", self.temp_path, writing=True) from error
        try:
            # In the threadpool: replacing a large file frees its blocks within
            # the call (60 ms for a 120 MB snapshot), which the hub would wait for.
            offload(os.replace, self.temp_path, self.path)
        except OSError as error:
            self._abort()
            raise map_os_error(error, "cannot rename the temp file to", self.path, writing=True) from error
        try:
            fd = os.open(self.directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            try:
                offload(os.fsync, fd)
            finally:
                os.close(fd)
        except OSError as error:
            raise map_os_error(error, "renamed into place, but cannot sync the directory", self.directory, True) from error

    def _abort(self) -> None:
        """Close and remove the temp file; never raises."""
        try:
            self.file.close()
        except OSError:
            pass
        try:
            os.unlink(self.temp_path)
        except OSError:
            pass


def write_file(path: str | os.PathLike[str], chunks: Iterable[bytes]) -> int:
    """Write ``chunks`` atomically to ``path`` (a temp file renamed into place); the bytes written.

    Pauses for other greenlets between chunks. Raises SnapshotPermissionError,
    SnapshotIOError or SnapshotExportError (see the module docstring), and
    whatever iterating ``chunks`` raises; on any failure ``path`` is as before.
    """
    written = 0
    with _AtomicFile(path) as file:
        for chunk in chunks:
            file.write(chunk)
            written += len(chunk)
            pause()
    return written


def write_snapshot(
    path: str | os.PathLike[str],
    batches: Iterable[Batch | list[tuple[bytes, bytes]]],
    source_backend: str,
    serialization: str,
    progress: Progress | None = None,
) -> tuple[int, int]:
    """Write the entries of ``batches`` (ascending keys, with their expiries) atomically to ``path``; (entries, file bytes).

    Pauses for other greenlets between batches, and within a batch between
    steps of :data:`STEP_ENTRIES` entries (a batch is written as one block,
    or several past :data:`BLOCK_BYTES`, all the same). Raises as
    :func:`write_file`.
    """
    with _AtomicFile(path) as file:
        writer = SnapshotWriter(file, source_backend, serialization)
        for item in batches:
            # A plain list is entries without expiries (the importer's and the tests' shape).
            if isinstance(item, list):
                batch: list[tuple[bytes, bytes]] = item
                expiries: list[int] | None = None
            else:
                batch, expiries = item
            for _ in writer.add_in_steps(batch, expiries):
                pause()
            if progress is not None:
                progress(writer.entries)
            pause()
        file_bytes = writer.finish()
    return writer.entries, file_bytes


# ---------------------------------------------------------------------------
# Reading.


@dataclass(frozen=True)
class SnapshotInfo:
    """What a snapshot's header says; ``verified`` once every block and the trailer were checked."""

    path: str
    format_version: int
    created_at_ns: int
    source_backend: str
    serialization: str
    created_by: str
    entries: int
    data_bytes: int
    file_bytes: int
    verified: bool


_NO_SIZE: Final = 1 << 62
"""The size taken for a snapshot read from a pipe: any block fits, truncation is found by reading."""


def _hash_in_steps(digest: Any, data: bytes | memoryview) -> None:
    """``digest.update(data)``, :data:`STEP_BYTES` at a time with :func:`pause` between."""
    if len(data) <= STEP_BYTES:
        digest.update(data)
        return
    with memoryview(data) as view:
        for start in range(0, len(view), STEP_BYTES):
            if start:
                pause()
            digest.update(view[start : start + STEP_BYTES])


def _lengths_fit(lengths: array[int], payload_size: int) -> bool:
    """Whether a block's (key, value) lengths sum to its payload size, every key 1 to MAX_KEY_BYTES long.

    Checked in steps of :data:`_LENGTHS_STEP` entries with :func:`pause` between.
    """
    total = 0
    for start in range(0, len(lengths), 2 * _LENGTHS_STEP):
        if start:
            pause()
        piece = lengths[start : start + 2 * _LENGTHS_STEP]
        key_lengths = piece[0::2]
        if min(key_lengths) < 1 or max(key_lengths) > MAX_KEY_BYTES:
            return False
        total += sum(piece)
    return total == payload_size


class SnapshotReader:
    """Reads and verifies a snapshot file. Use as a context manager.

    Opening reads and checks the header (magic, version, flags, header
    checksum), so :attr:`info` is known before any entry is read. Raises
    SnapshotNotFoundError, SnapshotPermissionError, SnapshotIOError and
    SnapshotReadError.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            self._file: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise map_os_error(exc, "cannot open snapshot", path, writing=False) from exc
        try:
            found = os.fstat(self._file.fileno())
            # A pipe or FIFO (``info /dev/stdin``) has no size: blocks are bounded by the format alone.
            self._size = found.st_size if stat.S_ISREG(found.st_mode) else _NO_SIZE
            self.info = self._read_header()
        except BaseException:
            self._file.close()
            raise

    def __enter__(self) -> SnapshotReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def _refuse(self, why: str) -> SnapshotReadError:
        return SnapshotReadError(f"{self.path} is not a valid locust-kv snapshot: {why}")

    def _read_some(self, size: int) -> bytes:
        try:
            return self._file.read(size)
        except OSError as exc:
            raise map_os_error(exc, "cannot read snapshot", self.path, writing=False) from exc

    def _read(self, size: int, what: str) -> bytes:
        data = self._read_some(size)
        if len(data) != size:
            raise self._refuse(f"truncated (file ends inside the {what})")
        return data

    def _read_in_steps(self, size: int, what: str) -> bytes:
        """As :meth:`_read`, :data:`STEP_BYTES` at a time with :func:`pause` between."""
        if size <= STEP_BYTES:
            return self._read(size, what)
        pieces = []
        left = size
        while left:
            piece = self._read_some(min(left, STEP_BYTES))
            if not piece:
                raise self._refuse(f"truncated (file ends inside the {what})")
            pieces.append(piece)
            left -= len(piece)
            pause()
        return b"".join(pieces)

    def _read_header(self) -> SnapshotInfo:
        head = self._read_some(_HEADER.size)
        if head[: len(MAGIC)] != MAGIC:
            if len(head) >= 4 and head[:4] == MAGIC[:4]:
                raise self._refuse("its magic bytes were altered (a text-mode copy rewrites line ends)")
            raise self._refuse("wrong magic bytes (another kind of file)")
        if len(head) < _HEADER.size:
            raise self._refuse("truncated (file ends inside the header)")
        _, version, size, flags, entries, data_bytes, created_at_ns, meta_len = _HEADER.unpack(head)
        if version not in READ_VERSIONS:
            raise self._refuse(f"format version {version}; this locust-kv reads versions 1 to {FORMAT_VERSION}")
        if size != _HEADER.size + meta_len + _CRC.size:
            raise self._refuse("inconsistent header size")
        rest = self._read(meta_len + _CRC.size, "header")
        metadata = rest[:meta_len]
        (crc,) = _CRC.unpack_from(rest, meta_len)
        if zlib.crc32(head + metadata) != crc:
            raise self._refuse("header checksum mismatch (the file was altered)")
        if flags != 0:
            raise self._refuse(f"unknown flags {flags:#x}")
        try:
            meta = orjson.loads(metadata)
        except orjson.JSONDecodeError:
            meta = None
        if not isinstance(meta, dict):
            raise self._refuse("header metadata is not a JSON object")
        self._header_size = size
        return SnapshotInfo(
            path=self.path,
            format_version=version,
            created_at_ns=created_at_ns,
            source_backend=str(meta.get("source_backend", "")),
            serialization=str(meta.get("serialization", "")),
            created_by=str(meta.get("created_by", "")),
            entries=entries,
            data_bytes=data_bytes,
            file_bytes=self._size if self._size != _NO_SIZE else 0,
            verified=False,
        )

    def blocks(self) -> Iterator[Batch]:
        """Every entry in file order, a block's at a time in slices of at most :data:`STEP_ENTRIES` entries
        and :data:`STEP_BYTES` payload bytes (one entry more, when it alone is larger), each with its
        expiries (see :data:`~.backends.base.Batch`); verifies the trailer after the last slice.

        Raises SnapshotReadError as soon as something is wrong: a malformed
        block, keys out of order, more entries or bytes than the header says,
        a truncated file, a digest mismatch, bytes after the trailer. Each
        block is read and checked whole before its first slice is yielded,
        so a damaged block is refused before any of its entries are handed
        out, and refusals come in the same order whatever the slicing. The
        work is done in steps of about a millisecond with :func:`pause`
        between them, so a large block does not hold the greenlet hub.
        """
        info = self.info
        digest = hashlib.sha256()
        entries = data_bytes = 0
        position = self._header_size
        last_key = b""
        while True:
            tag_and_sizes = self._read(_BLOCK.size, "block header")
            tag, count, payload_size = _BLOCK.unpack(tag_and_sizes)
            if tag == _TRAILER_TAG:
                break
            expiring = tag == _EXPIRY_BLOCK_TAG and info.format_version >= 2
            if tag != _BLOCK_TAG and not expiring:
                raise self._refuse(f"bad block tag at byte {position}")
            extra = 8 * count if expiring else 0
            if not 0 < count <= _MAX_BLOCK_ENTRIES or 8 * count + extra + payload_size > self._size - position:
                raise self._refuse(f"impossible block sizes at byte {position} (truncated or altered)")
            raw_lengths = self._read_in_steps(8 * count, "block")
            raw_expiries = self._read_in_steps(extra, "block") if expiring else b""
            payload = self._read_in_steps(payload_size, "block")
            digest.update(tag_and_sizes)
            _hash_in_steps(digest, raw_lengths)
            block_expiries: array[int] | None = None
            if expiring:
                _hash_in_steps(digest, raw_expiries)
                block_expiries = array("q")
                block_expiries.frombytes(raw_expiries)
                del raw_expiries
                if not _LITTLE_ENDIAN:
                    block_expiries.byteswap()
                if min(block_expiries) < 0:
                    raise self._refuse(f"block at byte {position} has a negative expiry")

            lengths = array("I")
            lengths.frombytes(raw_lengths)
            del raw_lengths
            if not _LITTLE_ENDIAN:
                lengths.byteswap()
            if not _lengths_fit(lengths, payload_size):
                raise self._refuse(f"block at byte {position} has inconsistent lengths")
            slices: deque[Batch] = deque()
            view = memoryview(payload)
            start = base = 0  # the slice's first entry, and where its payload starts
            while start < count:
                stop = min(start + STEP_ENTRIES, count)
                offsets = list(accumulate(lengths[2 * start : 2 * stop], initial=base))
                if offsets[-1] - base > STEP_BYTES and stop - start > 1:
                    # offsets[2 * e] is where the slice's entry e ends: keep the entries that end within the bound.
                    stop = start + max(1, (bisect_right(offsets, base + STEP_BYTES, 2) - 1) // 2)
                    del offsets[2 * (stop - start) + 1 :]
                end = offsets[-1]
                _hash_in_steps(digest, view[base:end])
                parts = [payload[a:b] for a, b in zip(offsets, islice(offsets, 1, None))]
                keys = parts[0::2]
                if keys[0] <= last_key or not all(map(lt, keys, islice(keys, 1, None))):
                    raise self._refuse("keys are not in strictly ascending order")
                last_key = keys[-1]
                part = None
                if block_expiries is not None:
                    part = block_expiries[start:stop].tolist()
                    if not any(part):
                        part = None
                slices.append((list(zip(keys, parts[1::2])), part))
                start, base = stop, end
                pause()
            view.release()
            del payload
            position += _BLOCK.size + 8 * count + extra + payload_size
            entries += count
            data_bytes += payload_size
            if entries > info.entries or data_bytes > info.data_bytes:
                # The header's figures were what restore checked its budget against.
                raise self._refuse("it holds more entries or bytes than its header says")
            while slices:
                yield slices.popleft()

        rest = self._read(_TRAILER.size - _BLOCK.size + _DIGEST_SIZE, "trailer")
        tail = tag_and_sizes + rest[: _TRAILER.size - _BLOCK.size]
        digest.update(tail)
        _, trailer_entries, trailer_bytes = _TRAILER.unpack(tail)
        if rest[-_DIGEST_SIZE:] != digest.digest():
            raise self._refuse("checksum mismatch (the file was altered or damaged)")
        if (trailer_entries, trailer_bytes) != (entries, data_bytes) or (entries, data_bytes) != (
            info.entries,
            info.data_bytes,
        ):
            raise self._refuse("entry or byte counts disagree between header, trailer and contents")
        if self._read_some(1):
            raise self._refuse("unexpected bytes after the trailer")
        self.info = replace(info, verified=True, file_bytes=position + len(tag_and_sizes) + len(rest))


def inspect(path: str | os.PathLike[str]) -> SnapshotInfo:
    """Read and verify the whole snapshot at ``path``; its figures, with ``verified`` True.

    Raises SnapshotNotFoundError, SnapshotPermissionError, SnapshotIOError or
    SnapshotReadError.
    """
    with SnapshotReader(path) as reader:
        for _ in reader.blocks():
            pause()
        return reader.info


def _held_back(blocks: Iterator[Batch], progress: Progress | None) -> Iterator[Batch]:
    """The slices of the blocks, each yielded only once the next is read; the last only once the trailer is verified."""
    pending: Batch | None = None
    done = 0
    for batch in blocks:
        if pending is not None:
            yield pending
            done += len(pending[0])
            if progress is not None:
                progress(done)
        pending = batch
    if pending is not None:
        yield pending
        if progress is not None:
            progress(done + len(pending[0]))


def _readable_entries(reader: SnapshotReader, serialization: str) -> Iterator[Batch]:
    """The reader's slices, each checked: keys UTF-8, values readable under ``serialization`` ('' or unknown: not checked).

    Each slice's check is a step of its own (:func:`pause` after it): with
    JSON values it costs about as much as reading the slice.
    """
    if serialization == "json":
        check_value: Callable[[bytes], object] | None = orjson.loads
    elif serialization == "string":
        check_value = bytes.decode
    else:
        check_value = None
    for batch in reader.blocks():
        for key, value in batch[0]:
            try:
                key.decode()
            except UnicodeDecodeError:
                raise reader._refuse("it holds a key that is not UTF-8 text, which no store operation could read") from None
            if check_value is not None:
                try:
                    check_value(value)
                except (UnicodeDecodeError, orjson.JSONDecodeError):
                    raise reader._refuse(
                        f"it holds a value that is not {'a JSON document' if serialization == 'json' else 'UTF-8 text'},"
                        f" which a {serialization} store could not read back"
                    ) from None
        pause()
        yield batch


# ---------------------------------------------------------------------------
# Backup and restore of a backend.


def backup(
    backend: Backend,
    path: str | os.PathLike[str],
    allow_concurrent_writes: bool,
    serialization: str,
    progress: Progress | None = None,
) -> BackupSummary:
    """Write every entry of ``backend`` to a snapshot at ``path``, atomically.

    Arguments are already checked (:func:`check_backup_options`). The
    backend's reader decides what writers see meanwhile; it is released as
    soon as the last entry is read, before the file is synced and renamed.
    """
    reader = backend.begin_backup(allow_concurrent_writes)
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            reader.close()

    def batches() -> Iterator[Batch]:
        # Batches of a step each: the backend's reader takes about a millisecond to make one, as the writer to write it.
        yield from reader.batches(STEP_ENTRIES)
        release()  # writers held back by a strict backup go on while the file is synced and renamed

    try:
        entries, file_bytes = write_snapshot(path, batches(), backend.kind, serialization, progress)
    finally:
        release()
    best_effort = not reader.point_in_time
    return BackupSummary(entries, file_bytes, best_effort, BEST_EFFORT_WARNING if best_effort else "")


def restore(
    backend: Backend,
    path: str | os.PathLike[str],
    max_entries: int,
    max_bytes: int,
    progress: Progress | None = None,
    serialization: str | None = None,
) -> RestoreSummary:
    """Replace every entry of ``backend`` with the snapshot at ``path``, all or nothing.

    Arguments are already checked (:func:`check_restore_options`). The
    budgets (0: no cap) are checked against the header before the backend is
    touched; the contents are verified while they stream into the backend,
    which keeps its old data if anything fails. The summary counts the
    entries restored.

    ``serialization`` is the store's: a snapshot that records another one is
    refused (SnapshotMismatchError) before anything is read into the store;
    None takes the snapshot's. Every key must be UTF-8 and every value one
    the serialization reads back (UTF-8 text, or a JSON document): a
    snapshot with one that is not (crafted, with valid checksums) is refused
    with SnapshotReadError and the live data kept.
    """
    replace_all = backend.replace_all  # first, so that a closed handle fails before the file is read
    max_entries, max_bytes = int.__index__(max_entries), int.__index__(max_bytes)  # plain ints, whatever subclass
    with SnapshotReader(path) as reader:
        info = reader.info
        for cap, figure, what in ((max_entries, info.entries, "entries"), (max_bytes, info.data_bytes, "bytes")):
            if cap and figure > cap:
                raise SnapshotBudgetExceededError(
                    f"snapshot holds {figure} {'key+value bytes' if what == 'bytes' else 'entries'}; "
                    f"max_{what} is {cap}; nothing was restored"
                )
        recorded = info.serialization
        if serialization is not None and recorded and recorded != serialization:
            raise SnapshotMismatchError(
                f"the snapshot was written under serialization {recorded!r} and the store uses {serialization!r}: "
                "its values would not read back; nothing was restored"
            )
        readable = _readable_entries(reader, serialization or recorded)
        stored = replace_all(_held_back(readable, progress))
        if not reader.info.verified:
            raise UnexpectedStoreOutputError("the backend stopped reading the snapshot before its end")
        if type(stored) is not int or not 0 <= stored <= reader.info.entries:
            raise UnexpectedStoreOutputError("backend returned a result outside its contract")
        # What the backend stored: the snapshot's entries but those that had
        # expired (a count taken afterwards could include later writes).
        return RestoreSummary(stored, reader.info.entries - stored)
