"""One table from redis-py's exceptions to the catalogue, applied at the backend's boundary.

Every exception that redis-py can raise has its own row in
:data:`REDIS_ERRORS` (a test walks ``redis.exceptions`` and fails on a class
without one); an exception of a newer class falls back to the row of its
nearest base class. A row names a catalogued class, or :data:`BY_OPERATION`:
StoreReadError for a read, StoreWriteError for a write.

The scripts' own refusals arrive as a ``ResponseError`` whose first word is a
code (see ``scripts.py``); :data:`SCRIPT_CODES` names them.

Messages keep the server's reason but never the key (the front-end keeps it
on ``err.key``) nor the password of the URL.
"""

from __future__ import annotations

from typing import Final

from redis import exceptions as rx

from ...errors import (
    BackupInProgressError,
    KVError,
    QuotaExceededError,
    RestoreInProgressError,
    StoreFullError,
    StoreOpenError,
    StoreReadError,
    StoreTimeoutError,
    StoreUnavailableError,
    StoreWriteError,
    ValueParseError,
)

__all__ = ["BY_OPERATION", "REDIS_ERRORS", "SCRIPT_CODES", "map_redis_error"]

BY_OPERATION: Final = None
"""A row's target meaning: StoreReadError for a read, StoreWriteError for a write."""

_ROWS: Final[tuple[tuple[str, type[KVError] | None], ...]] = (
    # The server cannot be reached or is not serving yet: transient.
    ("ConnectionError", StoreUnavailableError),
    ("BusyLoadingError", StoreUnavailableError),
    ("MaxConnectionsError", StoreUnavailableError),
    ("MaxClientsReachedError", StoreUnavailableError),
    ("ClusterDownError", StoreUnavailableError),
    ("TryAgainError", StoreUnavailableError),
    ("MasterDownError", StoreUnavailableError),
    ("RedisClusterUnreachableError", StoreUnavailableError),
    ("TimeoutError", StoreTimeoutError),
    # Configuration that retrying will not fix: credentials, permissions, a
    # replica, a Cluster node answered by this (non-Cluster) client.
    ("AuthenticationError", StoreOpenError),
    ("AuthenticationWrongNumberOfArgsError", StoreOpenError),
    ("AuthorizationError", StoreOpenError),
    ("NoPermissionError", StoreOpenError),
    ("ExternalAuthProviderError", StoreOpenError),
    ("ReadOnlyError", StoreOpenError),
    ("MovedError", StoreOpenError),
    ("AskError", StoreOpenError),
    ("ClusterCrossSlotError", StoreOpenError),
    ("SlotNotCoveredError", StoreOpenError),
    # maxmemory reached with a no-eviction policy.
    ("OutOfMemoryError", StoreFullError),
    # Anything else the server or the client refused: a failed read or write.
    ("RedisError", BY_OPERATION),
    ("ResponseError", BY_OPERATION),
    ("NoScriptError", BY_OPERATION),  # reloaded by redis-py's Script; escapes only if the reload fails
    ("ExecAbortError", BY_OPERATION),
    ("ModuleError", BY_OPERATION),
    ("NoSuchFieldsetError", BY_OPERATION),
    ("InvalidResponse", BY_OPERATION),
    ("DataError", BY_OPERATION),
    ("PubSubError", BY_OPERATION),
    ("WatchError", BY_OPERATION),
    ("LockError", BY_OPERATION),
    ("LockNotOwnedError", BY_OPERATION),
    ("ChildDeadlockedError", BY_OPERATION),
    ("RedisClusterException", BY_OPERATION),
    ("ClusterError", BY_OPERATION),
    ("CrossSlotTransactionError", BY_OPERATION),
    ("InvalidPipelineStack", BY_OPERATION),
    ("IncorrectPolicyType", BY_OPERATION),
)

# By name: classes that an older redis-py (>= 5.0) lacks are left out.
REDIS_ERRORS: Final[dict[type[BaseException], type[KVError] | None]] = {
    getattr(rx, name): target for name, target in _ROWS if hasattr(rx, name)
}
"""redis-py exception class -> catalogued class (or BY_OPERATION)."""

SCRIPT_CODES: Final[dict[str, type[KVError] | None]] = {
    "LKV_RESTORE": RestoreInProgressError,
    "LKV_BACKUP": BackupInProgressError,
    "LKV_PARSE": ValueParseError,
    "LKV_RANGE": ValueParseError,
    "LKV_QUOTA": QuotaExceededError,
    "LKV_LEASE": BY_OPERATION,  # a backup or restore outlived its lease; it stops, changing nothing
}
"""The first word of a script's error reply -> catalogued class (or BY_OPERATION)."""


def _target(exc: BaseException) -> type[KVError] | None:
    for cls in type(exc).__mro__:
        if cls in REDIS_ERRORS:
            return REDIS_ERRORS[cls]
    return BY_OPERATION


def map_redis_error(exc: BaseException, writing: bool, secret: str | None) -> KVError:
    """The catalogued error for redis-py's ``exc`` during a read (``writing`` False) or a write.

    ``secret`` (the URL's password) is removed from the message. The caller
    chains the cause (``raise map_redis_error(...) from exc``).
    """
    text = str(exc).strip()
    if secret:
        text = text.replace(secret, "***")
    target = _target(exc)
    if isinstance(exc, rx.ResponseError):
        code, _, rest = text.partition(" ")
        if code in SCRIPT_CODES:
            return _build(SCRIPT_CODES[code], writing, rest)
        if code == "OOM" or text.startswith("OOM "):
            return StoreFullError(f"the redis server is out of memory (maxmemory): {text}")
    if target is BY_OPERATION:
        action = "write" if writing else "read"
        return _build(None, writing, f"redis server refused the {action}: {text}")
    if target is StoreUnavailableError:
        return StoreUnavailableError(f"the redis server is unavailable: {text}")
    if target is StoreTimeoutError:
        return StoreTimeoutError(f"the redis server did not answer in time: {text}")
    if target is StoreOpenError:
        return StoreOpenError(f"the redis server refused this client ({type(exc).__name__}): {text}")
    return target(f"{text}")


def _build(target: type[KVError] | None, writing: bool, message: str) -> KVError:
    if target is None:
        target = StoreWriteError if writing else StoreReadError
    return target(message)
