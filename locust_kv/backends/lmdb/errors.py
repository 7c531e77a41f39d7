"""The error table: every :class:`lmdb.Error` becomes a catalogued error, with the cause chained.

An error is mapped by its class (:data:`LMDB_ERRORS`) and by the failing
operation's :class:`Family`: the classes the table does not pin become that
family's error (DiskStoreReadError for a read, DiskStoreOpenError while
opening, ...). The text names the LMDB error and its reason, never the key.
"""

from __future__ import annotations

import errno
from typing import Final, NamedTuple

import lmdb

from ...errors import (
    BucketNotFoundError,
    DiskStoreDeleteError,
    DiskStoreExistsError,
    DiskStoreFullError,
    DiskStoreIndexError,
    DiskStoreOpenError,
    DiskStoreReadError,
    DiskStoreScanError,
    DiskStoreSizeError,
    DiskStoreWriteError,
    KeyListRebuildError,
    KVError,
)

__all__ = [
    "DELETE",
    "EXISTS",
    "INDEX",
    "LMDB_ERRORS",
    "NO_SPACE",
    "OPEN",
    "OWN",
    "READ",
    "REBUILD",
    "SCAN",
    "SIZE",
    "WRITE",
    "Family",
    "map_lmdb_error",
    "os_error",
]

OWN: Final = None
"""In :data:`LMDB_ERRORS`: the failing operation's own error (its family's)."""

LMDB_ERRORS: Final[dict[str, type[KVError] | None]] = {
    # Map full, and no growth left (the cap, or the disk); ENOSPC.
    "MapFullError": DiskStoreFullError,
    "DiskError": DiskStoreFullError,
    # A named database that is missing, or is not one: a foreign or damaged file.
    "NotFoundError": BucketNotFoundError,
    "IncompatibleError": BucketNotFoundError,
    "BadDbiError": BucketNotFoundError,
    # Everything else is the failing operation's error (DiskStoreOpenError while opening).
    "Error": OWN,
    "KeyExistsError": OWN,
    "PageNotFoundError": OWN,
    "CorruptedError": OWN,
    "PanicError": OWN,
    "VersionMismatchError": OWN,
    "InvalidError": OWN,
    "DbsFullError": OWN,
    "ReadersFullError": OWN,
    "TlsFullError": OWN,
    "TxnFullError": OWN,
    "CursorFullError": OWN,
    "PageFullError": OWN,
    "MapResizedError": OWN,
    "BadRslotError": OWN,
    "BadTxnError": OWN,
    "BadValsizeError": OWN,
    "ReadonlyError": OWN,
    "InvalidParameterError": OWN,
    "LockError": OWN,
    "MemoryError": OWN,
    "ProblemError": OWN,
    "BadChecksumError": OWN,
    "CryptoFailError": OWN,
    "EnvEncryptionError": OWN,
}
"""Every :class:`lmdb.Error` class, by name, to the catalogued error it becomes.

Keyed by name so that the table also reads on py-lmdb versions that lack the
LMDB 1.0 classes; a test checks that every subclass of the installed version
is listed.
"""


class Family(NamedTuple):
    """An operation's kind: the error it raises and the words that start its message."""

    error: type[KVError]
    what: str


OPEN: Final = Family(DiskStoreOpenError, "could not open the disk store")
READ: Final = Family(DiskStoreReadError, "disk store read failed")
EXISTS: Final = Family(DiskStoreExistsError, "disk store exists check failed")
WRITE: Final = Family(DiskStoreWriteError, "disk store write failed")
DELETE: Final = Family(DiskStoreDeleteError, "disk store delete failed")
SCAN: Final = Family(DiskStoreScanError, "disk store scan failed")
SIZE: Final = Family(DiskStoreSizeError, "disk store size query failed")
INDEX: Final = Family(DiskStoreIndexError, "disk store random key lookup failed")
REBUILD: Final = Family(KeyListRebuildError, "key index rebuild failed")

NO_SPACE: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""``posix_fallocate`` errors that mean the disk (or the quota, or the file size limit) has no more room."""


def map_lmdb_error(exc: lmdb.Error, family: Family) -> KVError:
    """The catalogued error for ``exc`` raised during an operation of ``family``.

    The text names the LMDB error and its reason, never the key.
    """
    target: type[KVError] | None = OWN
    for cls in type(exc).__mro__:
        if cls.__name__ in LMDB_ERRORS and issubclass(cls, lmdb.Error):
            target = LMDB_ERRORS[cls.__name__]
            break
    error_class = family.error if target is None else target
    return error_class(f"{family.what}: {type(exc).__name__}: {exc}")


def os_error(exc: OSError) -> str:
    """An OS error's reason, for a message."""
    return exc.strerror or str(exc)
