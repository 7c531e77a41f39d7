"""The error catalogue of locust_kv.

Every failure raised by locust_kv is an instance of :class:`KVError`. The
class name is the error's stable catalogue name (``err.name``); it never
changes once released, so a locustfile can branch on it. Each class also
belongs to one recovery group (``err.group``), which says what to do about it:

    KVError
    ├── transient: retry with backoff
    │   ├── BackupInProgressError, RestoreInProgressError
    │   ├── StoreUnavailableError, StoreTimeoutError
    │   └── LockTimeoutError
    ├── user error: fix the call or the data, then retry
    │   ├── KeyNotFoundError, InvalidKeyError, KeyTooLongError,
    │   │   InvalidCursorError, InvalidArgumentError
    │   ├── ValueNumberRequiredError, ValueParseError,
    │   │   UnsupportedValueTypeError, SerializerError
    │   ├── BackupOptionsRequiredError, RestoreOptionsRequiredError,
    │   │   SnapshotBudgetExceededError, SnapshotNotFoundError,
    │   │   SnapshotReadError, SnapshotImportError, SnapshotMismatchError
    │   ├── StoreClosedError, DatabaseNotOpenError
    │   ├── QuotaExceededError
    │   └── ClaimLostError
    │       └── LockLostError
    ├── configuration: fix options, paths or permissions
    │   ├── InvalidBackendError, InvalidSerializationError,
    │   │   InvalidOptionsError, KVOptionsConflictError, ReadOnlyStoreError
    │   ├── StoreNotSharedError
    │   │   └── MemoryBackendNotSharedError
    │   ├── StoreOpenError
    │   │   └── DiskStoreOpenError
    │   └── DiskPathError, UnsafeFilesystemError, SnapshotPermissionError
    └── system failure: fail fast and investigate
        ├── StoreReadError
        │   └── DiskStoreReadError, DiskStoreExistsError, DiskStoreScanError,
        │       DiskStoreSizeError, DiskStoreIndexError
        ├── StoreWriteError
        │   └── DiskStoreWriteError, DiskStoreDeleteError
        ├── StoreFullError
        │   └── DiskStoreFullError
        ├── KeyListRebuildError, BucketNotFoundError
        ├── SnapshotExportError, SnapshotIOError
        └── UnexpectedStoreOutputError, UnknownError

``str(err)`` and ``repr(err)`` start with the name and never contain the key
the operation was called with, because Locust groups failures by that text:
one failure row per error kind, not one per key. The key, the operation and
the backend are kept on attributes (``err.key``, ``err.operation``,
``err.backend``). The cause, when there is one, is chained (``__cause__``).

ERRORS.md is the user-facing catalogue; a test keeps it equal to this module.

This module is over 500 lines: it is the catalogue, one short class per
error name with its group and its docstring, and reads as one list in the
order of ERRORS.md; splitting it would scatter the names a test keeps
equal to that file.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import ClassVar

__all__ = [
    "BackupInProgressError",
    "BackupOptionsRequiredError",
    "BucketNotFoundError",
    "ClaimLostError",
    "DatabaseNotOpenError",
    "DiskPathError",
    "DiskStoreDeleteError",
    "DiskStoreExistsError",
    "DiskStoreFullError",
    "DiskStoreIndexError",
    "DiskStoreOpenError",
    "DiskStoreReadError",
    "DiskStoreScanError",
    "DiskStoreSizeError",
    "DiskStoreWriteError",
    "ErrorGroup",
    "InvalidArgumentError",
    "InvalidBackendError",
    "InvalidCursorError",
    "InvalidKeyError",
    "InvalidOptionsError",
    "InvalidSerializationError",
    "KVError",
    "KVOptionsConflictError",
    "KeyListRebuildError",
    "KeyNotFoundError",
    "KeyTooLongError",
    "LockLostError",
    "LockTimeoutError",
    "MemoryBackendNotSharedError",
    "QuotaExceededError",
    "ReadOnlyStoreError",
    "RestoreInProgressError",
    "RestoreOptionsRequiredError",
    "SerializerError",
    "SnapshotBudgetExceededError",
    "SnapshotExportError",
    "SnapshotIOError",
    "SnapshotImportError",
    "SnapshotMismatchError",
    "SnapshotNotFoundError",
    "SnapshotPermissionError",
    "SnapshotReadError",
    "StoreClosedError",
    "StoreFullError",
    "StoreNotSharedError",
    "StoreOpenError",
    "StoreReadError",
    "StoreTimeoutError",
    "StoreUnavailableError",
    "StoreWriteError",
    "UnexpectedStoreOutputError",
    "UnknownError",
    "UnsafeFilesystemError",
    "UnsupportedValueTypeError",
    "ValueNumberRequiredError",
    "ValueParseError",
    "catalogue",
]


class ErrorGroup(str, enum.Enum):
    """How to recover from an error; every catalogued error has exactly one."""

    TRANSIENT = "transient"
    """Another operation is in the way for a moment: retry with backoff."""
    USER = "user error"
    """The call or the data is wrong: fix it; retrying unchanged fails again."""
    CONFIGURATION = "configuration"
    """Options, paths or permissions are wrong: fix the set-up."""
    SYSTEM = "system failure"
    """The store or the machine failed: fail fast and investigate."""


class KVError(Exception):
    """Base class of every locust_kv error.

    Attributes:
        name: the stable catalogue name (the class name).
        group: the recovery group.
        message: the diagnostic text, without the name.
        key: the key the failing operation was called with, if any.
        operation: the name of the failing operation (``"get"``...), if any.
        backend: the backend's name (``"memory"``, ``"disk"``, ``"redis"``), when raised by a store.
    """

    name: ClassVar[str] = "KVError"
    group: ClassVar[ErrorGroup] = ErrorGroup.SYSTEM
    default_message: ClassVar[str] = "locust_kv error"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = cls.__name__

    def __init__(
        self,
        message: str | None = None,
        *,
        key: str | None = None,
        operation: str | None = None,
        backend: str | None = None,
    ) -> None:
        self.message = message if message is not None else self.default_message
        super().__init__(self.message)
        self.key = key
        self.operation = operation
        self.backend = backend

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"

    def __reduce__(self) -> tuple[Callable[..., KVError], tuple[type[KVError], str, str | None, str | None, str | None]]:
        # Keep the attributes when the error crosses a process boundary.
        return (_rebuild_error, (type(self), self.message, self.key, self.operation, self.backend))


def _rebuild_error(
    cls: type[KVError], message: str, key: str | None, operation: str | None, backend: str | None
) -> KVError:
    return cls(message, key=key, operation=operation, backend=backend)


# --------------------------------------------------------------------------
# Transient: retry with backoff.


class BackupInProgressError(KVError):
    """A strict backup is running: writes, and a second backup, fail fast until it ends."""

    group = ErrorGroup.TRANSIENT
    default_message = "a backup is in progress; retry when it completes"


class RestoreInProgressError(KVError):
    """A restore is replacing the dataset: writes fail fast until it ends."""

    group = ErrorGroup.TRANSIENT
    default_message = "a restore is in progress; retry when it completes"


class StoreUnavailableError(KVError):
    """A networked store's server cannot be reached (refused, reset, unresolvable, loading)."""

    group = ErrorGroup.TRANSIENT
    default_message = "the store's server is unavailable"


class StoreTimeoutError(KVError):
    """A networked store's server did not answer within the socket timeout."""

    group = ErrorGroup.TRANSIENT
    default_message = "the store's server did not answer in time"


class LockTimeoutError(KVError):
    """``lock`` could not take the named lock within its ``wait``: another holder kept it all along."""

    group = ErrorGroup.TRANSIENT
    default_message = "the lock was not acquired within the wait"


# --------------------------------------------------------------------------
# User error: fix the call or the data.


class KeyNotFoundError(KVError):
    """``get`` was called for a key that is not in the store."""

    group = ErrorGroup.USER
    default_message = "key not found"


class InvalidKeyError(KVError):
    """A key is not a non-empty str, or cannot be encoded as UTF-8."""

    group = ErrorGroup.USER
    default_message = "keys must be non-empty str"


class KeyTooLongError(KVError):
    """A key is longer than the 511 bytes of UTF-8 that every backend accepts."""

    group = ErrorGroup.USER
    default_message = "key longer than 511 bytes of UTF-8"


class InvalidCursorError(KVError):
    """``scan`` was given a cursor it did not produce."""

    group = ErrorGroup.USER
    default_message = "malformed scan cursor"


class InvalidArgumentError(KVError):
    """An argument other than a key, value or cursor has the wrong type or value."""

    group = ErrorGroup.USER
    default_message = "invalid argument"


class ValueNumberRequiredError(KVError):
    """``increment_by`` was given a delta that is not an int (bools and floats included)."""

    group = ErrorGroup.USER
    default_message = "delta must be an int"


class ValueParseError(KVError):
    """A counter's stored value is not an integer, or the result leaves signed 64-bit."""

    group = ErrorGroup.USER
    default_message = "stored value is not an integer counter"


class UnsupportedValueTypeError(KVError):
    """A value's type cannot be stored with the store's serialization."""

    group = ErrorGroup.USER
    default_message = "value type not supported by this serialization"


class SerializerError(KVError):
    """A value of a supported type failed to encode, or a stored value failed to decode."""

    group = ErrorGroup.USER
    default_message = "value could not be serialized or deserialized"


class BackupOptionsRequiredError(KVError):
    """``backup`` was given options it cannot use (a file name that is not a path)."""

    group = ErrorGroup.USER
    default_message = "backup options are invalid"


class RestoreOptionsRequiredError(KVError):
    """``restore`` was given options it cannot use (a file name that is not a path, bad budgets)."""

    group = ErrorGroup.USER
    default_message = "restore options are invalid"


class SnapshotBudgetExceededError(KVError):
    """A snapshot holds more entries or bytes than the restore's budget allows."""

    group = ErrorGroup.USER
    default_message = "snapshot exceeds the restore budget"


class SnapshotNotFoundError(KVError):
    """The snapshot file to restore or inspect does not exist."""

    group = ErrorGroup.USER
    default_message = "snapshot file not found"


class SnapshotReadError(KVError):
    """A snapshot file is truncated, altered, of another format or of an unknown version."""

    group = ErrorGroup.USER
    default_message = "snapshot file is unreadable"


class SnapshotMismatchError(KVError):
    """A snapshot was written under another serialization than the store it is restored into."""

    group = ErrorGroup.USER
    default_message = "the snapshot's serialization is not the store's; nothing was restored"


class SnapshotImportError(KVError):
    """``locust-kv snapshot import`` found bad rows in its JSONL or CSV source (each is reported with its line)."""

    group = ErrorGroup.USER
    default_message = "the import source has bad rows; nothing was written"


class StoreClosedError(KVError):
    """A method was called on a handle after its ``close()``."""

    group = ErrorGroup.USER
    default_message = "the store handle is closed"


class DatabaseNotOpenError(KVError):
    """A store was used that was never opened (for example ``environment.kv`` without the plugin)."""

    group = ErrorGroup.USER
    default_message = "the store is not open"


class QuotaExceededError(KVError):
    """A write would take the store past the ``max_keys`` or ``max_bytes`` its handle was opened with.

    Checked in the same atomic step as the write, which changed nothing.
    Deletes, pops and claims are never refused. The message names the limit,
    never the key, so a runaway locustfile makes one failure row.
    """

    group = ErrorGroup.USER
    default_message = "the store's quota is reached; nothing was written"


class ClaimLostError(KVError):
    """``release_claim``, ``complete_claim`` or ``renew_claim`` was given a lease that is no longer live.

    The lease expired, was released or completed already, was taken over by
    another claimer after it expired, or its key was removed. The token
    decides, not the caller's clock: a stale holder can never act on the
    current holder's lease.
    """

    group = ErrorGroup.USER
    default_message = "the claim is no longer held"


class LockLostError(ClaimLostError):
    """A held lock's lease ended before its holder released or renewed it.

    It expired (the holder outlived ``ttl`` without renewing), another
    holder took the lock over, or its key was removed (``clear``,
    ``restore``, a delete). Raised on release (the end of the ``with``
    block) and by ``renew_lock``; the work done under the lock may have
    overlapped another holder's. A kind of ClaimLostError.
    """

    default_message = "the lock's lease ended before it was released"


# --------------------------------------------------------------------------
# Configuration: fix options, paths or permissions.


class InvalidBackendError(KVError):
    """``open_kv`` was given a backend name that is not one of ``locust_kv.options.BACKENDS``."""

    group = ErrorGroup.CONFIGURATION
    default_message = 'backend must be "memory", "disk" or "redis"'


class InvalidSerializationError(KVError):
    """``open_kv`` was given a serialization other than ``"json"`` or ``"string"``."""

    group = ErrorGroup.CONFIGURATION
    default_message = 'serialization must be "json" or "string"'


class InvalidOptionsError(KVError):
    """``open_kv`` was given an option that is unknown or of the wrong type."""

    group = ErrorGroup.CONFIGURATION
    default_message = "invalid store options"


class KVOptionsConflictError(KVError):
    """The store is already open in this process with different options.

    Also the Locust web UI's start form asking for another store, or other
    restore options, than the run started with.
    """

    group = ErrorGroup.CONFIGURATION
    default_message = "store already open with different options"


class ReadOnlyStoreError(KVError):
    """A write was attempted through a handle opened with ``read_only=True``."""

    group = ErrorGroup.CONFIGURATION
    default_message = "the store was opened read-only"


class StoreNotSharedError(KVError):
    """The processes of one Locust run would not all use the same store.

    Raised by the plugin when a worker cannot see the store the master
    prepared (another host's filesystem, another server), so that a run never
    goes on with its data split between several stores.
    """

    group = ErrorGroup.CONFIGURATION
    default_message = "the processes of this run do not share one store"


class MemoryBackendNotSharedError(StoreNotSharedError):
    """A multi-process Locust run was configured with the per-process memory backend."""

    group = ErrorGroup.CONFIGURATION
    default_message = "the memory backend cannot be shared by several processes; use the disk backend"


class DiskPathError(KVError):
    """The disk store's path cannot be resolved or created, or is a directory."""

    group = ErrorGroup.CONFIGURATION
    default_message = "invalid disk store path"


class StoreOpenError(KVError):
    """A store could not be opened or connected to for a reason that retrying will not fix.

    For example a Redis URL whose password is refused, a server that is a
    read-only replica, or a server too old for the backend's scripts. The
    disk backend raises its own subclass, DiskStoreOpenError.
    """

    group = ErrorGroup.CONFIGURATION
    default_message = "could not open the store"


class UnsafeFilesystemError(KVError):
    """The disk store's file is on a network filesystem (NFS, SMB, ...), where LMDB's locks do not hold."""

    group = ErrorGroup.CONFIGURATION
    default_message = "the disk store is on a network filesystem, where LMDB is unsafe"


class DiskStoreOpenError(StoreOpenError):
    """The LMDB environment could not be opened (permissions, locks, not an LMDB file...)."""

    group = ErrorGroup.CONFIGURATION
    default_message = "could not open the disk store"


class SnapshotPermissionError(KVError):
    """The operating system denied access to a snapshot file or its directory."""

    group = ErrorGroup.CONFIGURATION
    default_message = "permission denied on the snapshot path"


# --------------------------------------------------------------------------
# System failure: fail fast and investigate.


class StoreReadError(KVError):
    """A read of the store failed on the engine or server (get, exists, scan, size, random_key).

    The disk backend raises its own subclasses (DiskStoreReadError...); catch
    this class to handle a failed read on every backend.
    """

    default_message = "store read failed"


class StoreWriteError(KVError):
    """A write to the store failed on the engine or server (every mutating operation).

    The disk backend raises its own subclasses (DiskStoreWriteError,
    DiskStoreDeleteError); catch this class to handle a failed write on every
    backend.
    """

    default_message = "store write failed"


class StoreFullError(KVError):
    """The store has no room left: a disk that cannot grow, or a server at its memory limit."""

    default_message = "the store is full"


class DiskStoreReadError(StoreReadError):
    """An LMDB read transaction failed during ``get``."""

    default_message = "disk store read failed"


class DiskStoreWriteError(StoreWriteError):
    """An LMDB write failed (set, increment_by, get_or_set, swap, compare_and_swap)."""

    default_message = "disk store write failed"


class DiskStoreDeleteError(StoreWriteError):
    """An LMDB delete failed (delete, delete_if_exists, compare_and_delete, clear)."""

    default_message = "disk store delete failed"


class DiskStoreExistsError(StoreReadError):
    """An LMDB lookup failed during ``exists``."""

    default_message = "disk store exists check failed"


class DiskStoreScanError(StoreReadError):
    """An LMDB cursor failed during ``scan`` or ``list``."""

    default_message = "disk store scan failed"


class DiskStoreSizeError(StoreReadError):
    """Counting the disk store's keys failed."""

    default_message = "disk store size query failed"


class DiskStoreIndexError(StoreReadError):
    """A ``random_key`` lookup in the disk store's key index failed, or a restore found the index it fills inconsistent."""

    default_message = "disk store random key lookup failed"


class DiskStoreFullError(StoreFullError):
    """The disk store needs to grow and cannot (the disk is full or the size cap is reached)."""

    default_message = "disk store is full and cannot grow"


class KeyListRebuildError(KVError):
    """Rebuilding the key index used by ``random_key`` failed."""

    default_message = "key index rebuild failed"


class BucketNotFoundError(KVError):
    """The LMDB file lacks locust_kv's named databases (a foreign or damaged file)."""

    default_message = "the disk store's databases are missing"


class SnapshotExportError(KVError):
    """Writing a backup failed while creating, filling or renaming its temp file."""

    default_message = "snapshot export failed"


class SnapshotIOError(KVError):
    """The operating system failed to read or write a snapshot file (I/O error, disk full)."""

    default_message = "snapshot I/O failed"


class UnexpectedStoreOutputError(KVError):
    """A backend returned a result outside its contract (a backend bug)."""

    default_message = "backend returned an unexpected result"


class UnknownError(KVError):
    """A failure that fits no other name; the original exception is chained."""

    default_message = "unexpected error"


def catalogue() -> dict[str, type[KVError]]:
    """Every catalogued error class, by name, in name order."""
    found: dict[str, type[KVError]] = {}
    pending = list(KVError.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls.__module__ == __name__:
            found[cls.name] = cls
        pending.extend(cls.__subclasses__())
    return dict(sorted(found.items()))
