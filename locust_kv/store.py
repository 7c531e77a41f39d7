"""The front-end: ``open_kv`` and the :class:`KV` handle.

The front-end validates arguments, serializes values, maps failures to the
catalogue and, when a Locust run asks for it, times every operation. It
talks to a backend (:mod:`locust_kv.backends.base`) in bytes, one atomic
operation per call, and never knows which backend it has.

This module is over 500 lines: :class:`KV` is the whole public API, one
method per operation with the docstring that states its contract (result,
atomicity, errors); a reader finds every operation in one class, and the
backends (:mod:`locust_kv.backends`), results (:mod:`locust_kv.results`)
and errors (:mod:`locust_kv.errors`) are apart.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import functools
import inspect
import math
import os
import weakref
from collections.abc import Callable
from time import monotonic, perf_counter
from typing import TYPE_CHECKING, Any, Final, cast

from gevent.monkey import get_original

from .backends.base import MAX_BATCH, MAX_CLAIM_TTL_MS, MAX_EXPIRY_TTL_MS, MAX_KEY_BYTES, MAX_OWNER_BYTES, prefix_end
from .errors import (
    ClaimLostError,
    LockLostError,
    LockTimeoutError,
    InvalidArgumentError,
    QuotaExceededError,
    InvalidCursorError,
    InvalidKeyError,
    InvalidOptionsError,
    KeyNotFoundError,
    KeyTooLongError,
    KVError,
    KVOptionsConflictError,
    ReadOnlyStoreError,
    SerializerError,
    StoreOpenError,
    StoreClosedError,
    UnexpectedStoreOutputError,
    UnknownError,
    ValueNumberRequiredError,
)
from ._cooperative import pause as _pause, sleep
from .locks import LOCK_PREFIX, LOCK_VALUE, Lock, check_wait, lock_key, poll_delays
from .options import DEFAULT_BACKEND, DEFAULT_SERIALIZATION, StoreOptions, configure_backend
from . import snapshot
from .results import (
    AllocationStats,
    BackupSummary,
    Claim,
    ClaimBatch,
    CompareAndDeleteResult,
    CompareAndSwapResult,
    DeletePrefixResult,
    Entry,
    GetOrSetResult,
    KeyScanPage,
    LockStatus,
    Lookup,
    RestoreSummary,
    ScanPage,
    StoreStats,
    SwapResult,
)
from .serialization import get_serializer

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from .backends.base import Backend, ClaimRecord
    from .serialization import Serializer

__all__ = ["KV", "Reporter", "encode_key", "open_kv", "open_stores", "read_marker", "set_reporter", "write_marker"]

Reporter = Callable[[str, float, "Exception | None"], None]
"""Called after every operation of a reporting store: (operation, seconds, error or None)."""

_allocate_lock = get_original("_thread", "allocate_lock")

# Builds a named tuple without the Python-level __new__ the class adds
# (about 150 ns a result on the hot path).
_new: Final = tuple.__new__


# ---------------------------------------------------------------------------
# Argument checks shared by every operation.


def encode_key(key: object) -> bytes:
    """A key as every backend stores it: its UTF-8 bytes, checked.

    Raises InvalidKeyError for what is not a non-empty str or cannot be
    encoded, KeyTooLongError past 511 bytes. The command line checks keys
    of an import with it, so they meet the rules of every store.
    """
    if type(key) is not str:
        if not isinstance(key, str):
            raise InvalidKeyError(f"keys must be non-empty str, not {type(key).__name__}")
        key = str.__str__(key)  # a subclass counts by its characters, whatever its methods do
    if not key:
        raise InvalidKeyError("keys must be non-empty str, not an empty string")
    try:
        data = key.encode()
    except UnicodeEncodeError:
        raise InvalidKeyError("key is not encodable as UTF-8") from None
    if len(data) > MAX_KEY_BYTES:
        raise KeyTooLongError(f"key is longer than {MAX_KEY_BYTES} bytes of UTF-8, the limit of every backend")
    return data


def _encode_prefix(prefix: object) -> bytes:
    if not isinstance(prefix, str):
        raise InvalidArgumentError(f"prefix must be str, not {type(prefix).__name__}")
    try:
        return str.encode(prefix)  # not prefix.encode(): a subclass may override it (or __len__...)
    except UnicodeEncodeError:
        raise InvalidArgumentError("prefix is not encodable as UTF-8") from None


MAX_SCAN_LIMIT: Final = 1 << 62
"""Larger limits are clamped to this: no store holds that many keys, so the page is the same,
and every backend's arithmetic (``islice``, Redis's ``LIMIT``, a signed 64-bit count) takes it."""


def _check_limit(limit: object) -> int:
    """The scan limit as a backend takes it: an int in ``[-inf, MAX_SCAN_LIMIT]``; <= 0 means no limit."""
    if type(limit) is not int and (not isinstance(limit, int) or isinstance(limit, bool)):
        raise InvalidArgumentError(f"limit must be an int, not {type(limit).__name__}")
    # int.__int__: the plain value of an int subclass, whatever its own methods do.
    return min(int.__int__(limit), MAX_SCAN_LIMIT)


def _check_offset(offset: object) -> int:
    """How many keys of a range a page skips: an int >= 0, clamped as a limit is."""
    if type(offset) is not int and (not isinstance(offset, int) or isinstance(offset, bool)):
        raise InvalidArgumentError(f"offset must be an int, not {type(offset).__name__}")
    value = int.__int__(offset)
    if value < 0:
        raise InvalidArgumentError("offset must be 0 or more")
    return min(value, MAX_SCAN_LIMIT)


def _encode_bound(bound: object, what: str) -> bytes:
    if not isinstance(bound, str):
        raise InvalidArgumentError(f"{what} must be str or None, not {type(bound).__name__}")
    try:
        return str.encode(bound)  # not bound.encode(): a subclass may override it
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"{what} is not encodable as UTF-8") from None


def _key_range(prefix: object, start: object, end: object) -> tuple[bytes, bytes | None]:
    """The byte range ``[low, high)`` of the keys that start with ``prefix`` and lie in ``[start, end)``.

    ``high`` None: no upper bound. ``start`` and ``end`` are str or None (no
    bound); ``end=""`` is refused, since no key sorts before it and other
    stores read it as "no end". A range may come out empty or inverted
    (``high`` <= ``low``): it then holds no key, which every backend answers.
    """
    low = _encode_prefix(prefix)
    high = prefix_end(low)
    if start is not None:
        low = max(low, _encode_bound(start, "start"))
    if end is not None:
        last = _encode_bound(end, "end")
        if not last:
            raise InvalidArgumentError('end must be a non-empty str, or None for no end ("" would match no key)')
        if high is None or last < high:
            high = last
    return low, high


def _resume(low: bytes, cursor: object) -> bytes:
    """``low``, moved strictly past the key a cursor names (``""``: the first page)."""
    if isinstance(cursor, str) and not str.__len__(cursor):  # str.__len__: a subclass counts by its characters
        return low
    return max(low, decode_cursor(cursor) + b"\x00")


def _pair(result: Any) -> tuple[Any, Any]:
    """A backend's two-part result, or UnexpectedStoreOutputError when it is not one."""
    if type(result) is not tuple or len(result) != 2:
        raise UnexpectedStoreOutputError("backend returned a result outside its contract")
    return result


def _decode_key(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise SerializerError("a stored key is not valid UTF-8") from None


def encode_cursor(last_key: bytes) -> str:
    """The opaque cursor that resumes a scan strictly after ``last_key``."""
    return base64.urlsafe_b64encode(last_key).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: object) -> bytes:
    """The key a cursor resumes after; InvalidCursorError for anything ``encode_cursor`` did not make."""
    if type(cursor) is not str:
        if not isinstance(cursor, str):
            raise InvalidCursorError(f"cursor must be str, not {type(cursor).__name__}")
        cursor = str.__str__(cursor)  # a subclass counts by its characters, whatever its methods do
    try:
        raw = cursor.encode("ascii")
        last_key = base64.b64decode(raw + b"=" * (-len(raw) % 4), altchars=b"-_", validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise InvalidCursorError("malformed scan cursor") from None
    if not last_key or len(last_key) > MAX_KEY_BYTES or encode_cursor(last_key) != cursor:
        raise InvalidCursorError("malformed scan cursor")
    return last_key


def _check_count(count: object, what: str = "count") -> int:
    """A batch size: an int in ``[1, MAX_BATCH]``."""
    if type(count) is not int and (not isinstance(count, int) or isinstance(count, bool)):
        raise InvalidArgumentError(f"{what} must be an int, not {type(count).__name__}")
    value = int.__int__(count)
    if not 1 <= value <= MAX_BATCH:
        raise InvalidArgumentError(f"{what} must be between 1 and {MAX_BATCH}")
    return value


def _milliseconds(ttl: object, longest_ms: int, none: str) -> int:
    """Seconds (int or float, > 0, at most ``longest_ms``) as whole milliseconds, rounded up; ``none`` ends the messages."""
    if type(ttl) is not float and type(ttl) is not int:
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
            raise InvalidArgumentError(f"ttl must be seconds as a float or int{none}, not {type(ttl).__name__}")
    seconds = float(ttl)
    if not 0 < seconds * 1000 <= longest_ms:  # NaN fails too
        raise InvalidArgumentError(f"ttl must be more than 0 and at most {longest_ms // 1000} seconds{none}")
    ms = math.ceil(seconds * 1000)
    return ms if ms > 0 else 1


def _check_ttl(ttl: object) -> int:
    """A lease duration in seconds (int or float, > 0, at most a week) as whole milliseconds, rounded up."""
    return _milliseconds(ttl, MAX_CLAIM_TTL_MS, "")


def _check_expiry(ttl: object) -> int:
    """A key's time to live in seconds (int or float, > 0, at most ten years) as whole milliseconds, rounded up."""
    return _milliseconds(ttl, MAX_EXPIRY_TTL_MS, " (None: no expiry)")


PURGE_BATCH: Final = 500
"""How many expired entries one step of ``purge_expired`` removes: a short atomic step on every backend."""


def _check_owner(owner: object) -> bytes:
    if type(owner) is not str:
        if not isinstance(owner, str):
            raise InvalidArgumentError(f"owner must be str, not {type(owner).__name__}")
        owner = str.__str__(owner)
    try:
        data = owner.encode()
    except UnicodeEncodeError:
        raise InvalidArgumentError("owner is not encodable as UTF-8") from None
    if len(data) > MAX_OWNER_BYTES:
        raise InvalidArgumentError(f"owner is longer than {MAX_OWNER_BYTES} bytes of UTF-8")
    return data


def _encode_keys(keys: object) -> list[bytes]:
    """A batch of keys: a list or tuple (not a str) of at most MAX_BATCH keys, each checked."""
    if type(keys) is not list and type(keys) is not tuple:
        if not isinstance(keys, (list, tuple)):
            raise InvalidArgumentError(f"keys must be a list or tuple of str, not {type(keys).__name__}")
    if len(keys) > MAX_BATCH:
        raise InvalidArgumentError(f"a batch takes at most {MAX_BATCH} keys")
    if not keys:
        return []
    # The common case checked at C speed: plain str keys of 1 to 511 bytes of UTF-8.
    if set(map(type, keys)) == _ONLY_STR:
        try:
            raw = list(map(str.encode, keys))
        except UnicodeEncodeError:
            pass
        else:
            if min(map(len, raw)) > 0 and max(map(len, raw)) <= MAX_KEY_BYTES:
                return raw
    return [encode_key(key) for key in keys]  # one by one, for the catalogued error of the first bad key


_ONLY_STR: Final = {str}


def _decode_keys(keys: list[bytes]) -> list[str]:
    try:
        return list(map(bytes.decode, keys))
    except UnicodeDecodeError:
        return [_decode_key(k) for k in keys]


def _claim_refs(claims: object) -> tuple[list[Claim], list[tuple[bytes, int]]]:
    """Claims given to release/complete/renew, and their backend references."""
    if not isinstance(claims, (list, tuple)):
        raise InvalidArgumentError(f"claims must be a list or tuple of Claim, not {type(claims).__name__}")
    if len(claims) > MAX_BATCH:
        raise InvalidArgumentError(f"a batch takes at most {MAX_BATCH} claims")
    refs = []
    for claim in claims:
        if not isinstance(claim, Claim):
            raise InvalidArgumentError(f"expected a Claim returned by a claim method, not {type(claim).__name__}")
        token = claim.token
        if type(token) is not int or token < 1:
            raise InvalidArgumentError("a Claim's token must be a positive int")
        refs.append((encode_key(claim.key), token))
    return list(claims), refs


# ---------------------------------------------------------------------------
# Stores shared by handles, and the process-wide registry.


class _Store:
    """One open store of this process, shared by every handle on it."""

    def __init__(self, options: StoreOptions, backend: Backend, serializer: Serializer) -> None:
        self.options = options
        self.backend = backend
        self.serializer = serializer
        self.handles: weakref.WeakSet[KV] = weakref.WeakSet()
        self.open_handles = 0
        self.reporter: Reporter | None = None
        # Calls per operation, counted while the store reports (see set_reporter).
        self.operations: dict[str, int] = {}
        # Set by the Locust plugin to bind leases to the user that made them:
        # called with the handle and the claims granted / ended (done or lost).
        self.on_claim: Callable[[list[Claim]], None] | None = None
        self.on_unclaim: Callable[[list[Claim]], None] | None = None
        self.default_owner: Callable[[], str] | None = None


_registry: dict[object, _Store] = {}
_registry_lock = _allocate_lock()


def open_kv(
    backend: str = DEFAULT_BACKEND,
    path: str | os.PathLike[str] | None = None,
    serialization: str = DEFAULT_SERIALIZATION,
    *,
    read_only: bool = False,
    **options: Any,
) -> KV:
    """Open the shared store and return a new handle on it.

    Args:
        backend: ``"disk"`` (LMDB, shared by every process on the host),
            ``"memory"`` (this process only) or ``"redis"`` (a Redis server,
            shared by every host that reaches it).
        path: the disk store's file; see the disk backend for the default.
            Only the disk backend takes it.
        serialization: ``"json"`` (values are JSON types) or ``"string"``
            (values are str, or bytes).
        read_only: a handle that can only read: every operation that could
            change data or leases raises ReadOnlyStoreError before the store
            is touched. A disk store opened read-only must exist already
            (StoreOpenError otherwise: it is never created). Other handles
            on the same store are unaffected.
        **options: the backend's own options, validated by its
            ``configure`` (``track_keys`` on every backend; ``map_size``...
            on disk; ``url``, ``namespace``... on redis).

    Every call with equal options returns a handle on the same data; a call
    for the same store (the same memory store name, disk path, or Redis
    server and namespace) with different options raises
    KVOptionsConflictError. Nothing that cannot survive ``fork()`` is
    created here, so a locustfile may call it at import.

    Raises:
        InvalidBackendError, InvalidSerializationError, InvalidOptionsError,
        KVOptionsConflictError, and the backend's own configuration and
        connection errors (DiskPathError, DiskStoreOpenError,
        UnsafeFilesystemError, StoreOpenError, StoreUnavailableError...).
    """
    try:
        if path is not None:
            if not isinstance(path, (str, os.PathLike)):
                raise InvalidOptionsError(f"path must be a str or path-like, not {type(path).__name__}")
            options["path"] = path
        if not isinstance(read_only, bool):
            raise InvalidOptionsError(f"read_only must be a bool, not {type(read_only).__name__}")
        serializer = get_serializer(serialization)
        spec = configure_backend(backend, options)
        if read_only and spec.scope == "host":
            store_path = getattr(spec, "path", None)
            if store_path is not None and not os.path.exists(store_path):
                raise StoreOpenError("a read-only open needs an existing store; none is at the path given")
        wanted = StoreOptions(spec=spec, serialization=serializer.name)
        while True:
            store = _registered(spec.identity, wanted)
            if store is None:
                # Created outside the registry lock: a backend may do I/O here
                # (a network backend connects, yielding to other greenlets),
                # and a second open_kv in this thread must not wait on a lock
                # it holds. Whoever registers first wins; a loser closes its own.
                created = spec.create()
                try:
                    store = _register(spec.identity, _Store(wanted, created, serializer))
                finally:
                    if store is None or store.backend is not created:
                        created.close()
            with _registry_lock:
                if _registry.get(spec.identity) is store:  # not closed by its last handle meanwhile
                    handle = KV(store, read_only)
                    store.open_handles += 1
                    return handle
    except KVError:
        raise
    except Exception as exc:
        raise UnknownError(f"unexpected {type(exc).__name__} in open_kv") from exc


def _registered(identity: object, wanted: StoreOptions) -> _Store | None:
    """The open store at ``identity``, or None; KVOptionsConflictError when its options differ."""
    with _registry_lock:
        store = _registry.get(identity)
    if store is not None and store.options != wanted:
        raise KVOptionsConflictError(
            "store already open in this process with different options: "
            f"open with {_describe(store.options)}, asked for {_describe(wanted)}"
        )
    return store


def _register(identity: object, store: _Store) -> _Store:
    """Register ``store``, or return the one another caller registered meanwhile (checked as by _registered)."""
    with _registry_lock:
        existing = _registry.setdefault(identity, store)
    if existing is not store:
        _registered(identity, store.options)
    return existing


def _describe(options: StoreOptions) -> str:
    described = dict(options.spec.describe(), serialization=options.serialization)
    return ", ".join(f"{k}={v!r}" for k, v in described.items())


def _check_restore_quota(backend: Backend, path: str | os.PathLike[str]) -> None:
    """QuotaExceededError, before anything is read into the store, for a snapshot whose header passes the quota.

    Only for a regular file (a pipe's header cannot be read twice); the
    backends check the loaded data again before the switch, whatever the source.
    """
    max_keys, max_bytes = backend.max_keys, backend.max_bytes
    if (max_keys is None and max_bytes is None) or not os.path.isfile(path):
        return
    with snapshot.SnapshotReader(path) as reader:
        info = reader.info
    if max_keys is not None and info.entries > max_keys:
        raise QuotaExceededError(f"the snapshot holds {info.entries} entries, past the store's max_keys={max_keys}; nothing was restored")
    # Key+value bytes: on disk the pages take at least as much, so this refuses nothing that would fit.
    if max_bytes is not None and info.data_bytes > max_bytes:
        raise QuotaExceededError(
            f"the snapshot holds {info.data_bytes} key+value bytes, past the store's max_bytes={max_bytes}; nothing was restored"
        )


def _release(store: _Store) -> None:
    with _registry_lock:
        store.open_handles -= 1
        if store.open_handles > 0:
            return
        if _registry.get(store.options.spec.identity) is store:
            del _registry[store.options.spec.identity]
    store.backend.close()


def open_stores() -> list[KV]:
    """A new handle on every store open in this process (for tools such as the Locust UI)."""
    with _registry_lock:
        stores = list(_registry.values())
        for store in stores:
            store.open_handles += 1
    return [KV(store) for store in stores]


def set_reporter(kv: KV, reporter: Reporter | None) -> None:
    """Time every operation of ``kv``'s store, on every handle, and pass it to ``reporter``.

    ``None`` turns reporting off. Used by the Locust plugin; costs nothing when off.
    """
    store = kv._store
    store.reporter = reporter
    cls = KV if reporter is None else _ReportingKV
    for handle in list(store.handles):
        if handle.__class__ is not cls:
            handle.__class__ = cls


def write_marker(kv: KV, name: str, value: str) -> None:
    """Store the marker ``name`` of ``kv``'s store: a record outside the key space.

    Markers are seen by every process sharing the store and never counted,
    listed, sampled, cleared, backed up or restored. The Locust plugin keeps
    its run token in one. Raises the backend's errors, as any write.
    """
    try:
        kv._backend.write_marker(name.encode(), value.encode())
    except BaseException as exc:
        raise kv._failure(exc, "write_marker")  # noqa: B904


def read_marker(kv: KV, name: str) -> str | None:
    """The marker ``name`` of ``kv``'s store, or None when it was never written."""
    try:
        value = kv._backend.read_marker(name.encode())
        return None if value is None else value.decode()
    except BaseException as exc:
        raise kv._failure(exc, "read_marker")  # noqa: B904


# ---------------------------------------------------------------------------
# The handle.


class _ClosedBackend:
    """Stands in for the backend of a closed handle: every use raises StoreClosedError."""

    def __getattr__(self, name: str) -> Any:
        raise StoreClosedError("the store handle is closed")


# A Backend to the checker: it answers every attribute, by raising.
_CLOSED: Final = cast("Backend", _ClosedBackend())

def _lock_key_of(lock: object) -> str | None:
    """The store key of a lock (a Lock, or a name), for the error's ``key`` attribute; None for anything else."""
    if isinstance(lock, Lock):
        return lock.key
    return LOCK_PREFIX + lock if isinstance(lock, str) else None


def _check_lock(lock: object, kv: KV) -> None:
    """InvalidArgumentError unless ``lock`` is a Lock taken on ``kv``'s store."""
    if not isinstance(lock, Lock):
        raise InvalidArgumentError(f"expected a Lock returned by lock(), not {type(lock).__name__}")
    if lock._kv._store is not kv._store:
        raise InvalidArgumentError("the lock was taken on another store")


def _key_of(claim: object) -> object:
    """The key of a Claim, for the error's ``key`` attribute; None for anything else."""
    return claim.key if isinstance(claim, Claim) else None


_MISSING: Final[Any] = object()
"""``get``'s default when none is given: absent keys raise KeyNotFoundError."""

_WRITES: Final = frozenset(
    {
        "set", "delete", "increment_by", "get_or_set", "swap", "compare_and_swap", "compare_and_delete",
        "compare_and_swap_detailed", "compare_and_delete_detailed", "clear", "rebuild_key_list",
        "claim_keys", "claim_random", "release_claims", "complete_claims", "renew_claims", "pop_random",
        "set_many", "delete_many", "delete_prefix", "replace_all", "write_marker", "expire", "persist",
        "purge_expired",
    }
)  # fmt: skip
"""Backend methods that can change data or leases: refused through a read-only handle."""


class _ReadOnlyBackend:
    """A backend seen through a read-only handle: reads pass, writes raise ReadOnlyStoreError."""

    __slots__ = ("_backend",)

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def __getattr__(self, name: str) -> Any:
        if name in _WRITES:
            raise ReadOnlyStoreError("the store was opened read-only")
        return getattr(self._backend, name)


class KV:
    """A handle on a shared key-value store. Get one from :func:`open_kv`.

    Every method is atomic with respect to every other call on the same store
    from any greenlet or thread of the process, and from every process that
    shares the store: on the disk backend every process on the host, on the
    redis backend every process on every host that reaches the server. Keys are non-empty str of at most 511 bytes of
    UTF-8. Every failure raises a :class:`~locust_kv.errors.KVError`.
    """

    __slots__ = ("__weakref__", "_backend", "_dumps", "_kind", "_loads", "_store")

    def __init__(self, store: _Store, read_only: bool = False) -> None:
        self._store = store
        # The read-only proxy is a Backend to the checker: it answers every attribute, reads by the backend's own.
        self._backend: Backend = cast("Backend", _ReadOnlyBackend(store.backend)) if read_only else store.backend
        self._kind = store.backend.kind
        self._dumps = store.serializer.dumps
        self._loads = store.serializer.loads
        store.handles.add(self)
        if store.reporter is not None:
            self.__class__ = _ReportingKV

    # -- failure mapping: the one place errors get their context ------------

    def _failure(self, exc: BaseException, operation: str, key: object = None) -> BaseException:
        if isinstance(exc, KVError):
            if exc.operation is None:
                exc.operation = operation
                exc.backend = self._kind
                if isinstance(key, str):
                    exc.key = key
            return exc
        if not isinstance(exc, Exception):
            return exc  # GreenletExit, KeyboardInterrupt, SystemExit pass through.
        error = UnknownError(
            f"unexpected {type(exc).__name__} in {operation}",
            key=key if isinstance(key, str) else None,
            operation=operation,
            backend=self._kind,
        )
        error.__cause__ = exc
        return error

    # -- description -------------------------------------------------------

    @property
    def backend(self) -> str:
        """The backend's name: ``"memory"``, ``"disk"`` or ``"redis"``."""
        return self._kind

    @property
    def scope(self) -> str:
        """Who shares the store: ``"process"``, ``"host"`` or ``"network"`` (see ``backends.base.Scope``)."""
        return self._store.backend.scope

    @property
    def location(self) -> str:
        """Where the data lives: the disk store's path, or a description."""
        return self._store.backend.location

    @property
    def serialization(self) -> str:
        """``"json"`` or ``"string"``."""
        return self._store.serializer.name

    @property
    def options(self) -> dict[str, Any]:
        """The store's options as plain values."""
        return dict(self._store.options.spec.describe(), serialization=self.serialization)

    @property
    def read_only(self) -> bool:
        """Whether this handle was opened with ``read_only=True``."""
        return isinstance(self._backend, _ReadOnlyBackend)

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called on this handle."""
        return self._backend is _CLOSED

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<KV {self._kind} {self.location!r} {self.serialization} {state}>"

    def __enter__(self) -> KV:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- single-key operations ----------------------------------------------

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """The value stored at ``key``; ``default`` when absent, if one is given.

        Raises KeyNotFoundError when absent and no default is given,
        SerializerError when the stored bytes do not decode. With a default
        there is one atomic read, so no exists-then-get race.
        """
        try:
            data = self._backend.get(encode_key(key))
            if data is None:
                if default is not _MISSING:
                    return default
                raise KeyNotFoundError("key not found")
            return self._loads(data)
        except BaseException as exc:
            raise self._failure(exc, "get", key)  # noqa: B904

    def set(self, key: str, value: Any, *, ttl: float | None = None) -> Any:
        """Store ``value`` at ``key``, replacing any value; returns ``value``.

        ``ttl``: seconds until the key expires; None (the default) stores it
        without expiry, dropping any it had. Raises UnsupportedValueTypeError
        or SerializerError for a value the serialization cannot store,
        InvalidArgumentError for a ttl that is not more than 0 (or past ten years).
        """
        try:
            self._backend.set(encode_key(key), self._dumps(value), None if ttl is None else _check_expiry(ttl))
            return value
        except BaseException as exc:
            raise self._failure(exc, "set", key)  # noqa: B904

    def delete(self, key: str) -> bool:
        """Remove ``key``. Always True, also when the key was absent."""
        try:
            self._backend.delete(encode_key(key))
            return True
        except BaseException as exc:
            raise self._failure(exc, "delete", key)  # noqa: B904

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""
        try:
            return self._backend.exists(encode_key(key))
        except BaseException as exc:
            raise self._failure(exc, "exists", key)  # noqa: B904

    def increment_by(self, key: str, delta: int, *, ttl: float | None = None) -> int:
        """Atomically add ``delta`` to the integer counter at ``key``; the new value.

        A missing (or expired) key counts as 0. The counter is stored as
        decimal text, so ``get`` returns an int under json and a str under
        string. ``ttl`` applies only when this call creates the key: a live
        counter keeps its expiry (or its lack of one), so a window started
        by the first increment ends on time however many follow.

        Raises ValueNumberRequiredError, before the store is touched, when
        ``delta`` is not an int (bool and float included); ValueParseError
        when the stored value is not an integer (decimal text, a JSON integer
        or a JSON string holding a decimal), or when the result would leave
        signed 64-bit, in which case nothing is written.
        """
        try:
            if type(delta) is not int:
                if not isinstance(delta, int) or isinstance(delta, bool):
                    raise ValueNumberRequiredError(f"delta must be an int, not {type(delta).__name__}")
                delta = int.__int__(delta)  # the plain value of an int subclass, whatever its own methods do
            return self._backend.increment_by(encode_key(key), delta, None if ttl is None else _check_expiry(ttl))
        except BaseException as exc:
            raise self._failure(exc, "increment_by", key)  # noqa: B904

    def get_or_set(self, key: str, value: Any, *, ttl: float | None = None) -> GetOrSetResult:
        """Atomically read ``key``, storing ``value`` first if it is absent.

        Returns ``(value, loaded)``: the stored value and True when the key
        existed (nothing was written), or the given value and False when it
        was just stored. ``ttl`` applies only when it stores: a hit leaves the
        key's expiry as it was.
        """
        try:
            stored, loaded = _pair(
                self._backend.get_or_set(encode_key(key), self._dumps(value), None if ttl is None else _check_expiry(ttl))
            )
            return _new(GetOrSetResult, (self._loads(stored) if loaded else value, loaded))
        except BaseException as exc:
            raise self._failure(exc, "get_or_set", key)  # noqa: B904

    def swap(self, key: str, value: Any, *, ttl: float | None = None) -> SwapResult:
        """Atomically store ``value`` and return ``(previous, loaded)``.

        Always writes. ``previous`` is None and ``loaded`` False when the key
        was absent. The expiry is set as ``set`` sets it (``ttl`` None: none).
        """
        try:
            previous = self._backend.swap(encode_key(key), self._dumps(value), None if ttl is None else _check_expiry(ttl))
            if previous is None:
                return _new(SwapResult, (None, False))
            return _new(SwapResult, (self._loads(previous), True))
        except BaseException as exc:
            raise self._failure(exc, "swap", key)  # noqa: B904

    def compare_and_swap(self, key: str, old: Any, new: Any, *, ttl: float | None = None) -> bool:
        """Atomically store ``new`` if the stored value equals ``old``; whether it did.

        ``old=None`` means "only if the key is absent". Values compare by
        their serialized form; under json, dicts compare equal whatever the
        order of their keys. A missing key with ``old`` not None: False.
        When it stores, the expiry is set as ``set`` sets it (``ttl`` None:
        none); when it does not, nothing changes.
        """
        try:
            expected = None if old is None else self._dumps(old)
            return self._backend.compare_and_swap(
                encode_key(key), expected, self._dumps(new), None if ttl is None else _check_expiry(ttl)
            )
        except BaseException as exc:
            raise self._failure(exc, "compare_and_swap", key)  # noqa: B904

    def delete_if_exists(self, key: str) -> bool:
        """Atomically remove ``key``; True only if it existed."""
        try:
            return self._backend.delete(encode_key(key))
        except BaseException as exc:
            raise self._failure(exc, "delete_if_exists", key)  # noqa: B904

    def compare_and_delete(self, key: str, old: Any) -> bool:
        """Atomically remove ``key`` if its stored value equals ``old``; whether it did.

        Values compare by their serialized form, as in ``compare_and_swap``
        (under json, ``old=None`` matches a stored JSON null).
        """
        try:
            return self._backend.compare_and_delete(encode_key(key), self._dumps(old))
        except BaseException as exc:
            raise self._failure(exc, "compare_and_delete", key)  # noqa: B904

    # -- whole-store operations ---------------------------------------------

    def clear(self) -> bool:
        """Atomically remove every key. Returns True."""
        try:
            self._backend.clear()
            return True
        except BaseException as exc:
            raise self._failure(exc, "clear")  # noqa: B904

    def size(self) -> int:
        """The number of keys in the store."""
        try:
            count = self._backend.size()
            if type(count) is not int or count < 0:
                raise UnexpectedStoreOutputError("backend returned a size that is not a count")
            return count
        except BaseException as exc:
            raise self._failure(exc, "size")  # noqa: B904

    def scan(
        self,
        prefix: str = "",
        limit: int = 0,
        cursor: str = "",
        *,
        start: str | None = None,
        end: str | None = None,
        offset: int = 0,
    ) -> ScanPage:
        """One page of the keys starting with ``prefix`` and in ``[start, end)``, ascending by UTF-8 bytes.

        ``start`` is inclusive, ``end`` exclusive, both compared by UTF-8
        bytes; None means no bound (``end=""`` is refused). An empty or
        inverted range is simply empty. ``offset`` skips that many keys of
        the range before the page, counted from where the page starts: the
        range's first key, or the key after the cursor's. ``limit`` <= 0
        returns every remaining entry. ``cursor`` is ``""`` for the first
        page, then the cursor of the previous page: the scan resumes strictly
        after that page's last key (pass the same prefix and range again, and
        ``offset`` 0 unless more keys are to be skipped). The last page has
        cursor ``""`` and ``done`` True. Each page is its own atomic read:
        under concurrent writes, a paged scan returns no key twice and skips
        no key that existed, unchanged, for the whole scan.

        Raises InvalidCursorError for a cursor this method did not return, and
        InvalidArgumentError for a prefix, bound, offset or limit of the wrong
        type or value.
        """
        try:
            return self._scan(prefix, limit, cursor, start, end, offset)
        except BaseException as exc:
            raise self._failure(exc, "scan")  # noqa: B904

    def _scan(self, prefix: str, limit: int, cursor: str, start: str | None, end: str | None, offset: int) -> ScanPage:
        low, high = _key_range(prefix, start, end)
        limit = _check_limit(limit)
        rows, more = _pair(self._backend.scan(_resume(low, cursor), high, _check_offset(offset), limit))
        loads = self._loads
        try:
            entries = [_new(Entry, (k.decode(), loads(v))) for k, v in rows]
        except UnicodeDecodeError:
            for k, _ in rows:
                _decode_key(k)  # the checked path raises the catalogued error
            raise
        if more and rows:
            return ScanPage(entries, encode_cursor(rows[-1][0]), False)
        return ScanPage(entries, "", True)

    def list(
        self, prefix: str = "", limit: int = 0, *, start: str | None = None, end: str | None = None, offset: int = 0
    ) -> builtins.list[Entry]:
        """The first ``limit`` entries (all when <= 0) after ``offset``, of the keys starting with ``prefix`` in ``[start, end)``, ascending."""
        try:
            return self._scan(prefix, limit, "", start, end, offset).entries
        except BaseException as exc:
            raise self._failure(exc, "list")  # noqa: B904

    def random_key(self, prefix: str = "") -> str:
        """A key chosen uniformly among those starting with ``prefix``; ``""`` when none does.

        O(1) without a prefix and O(log n) with one on the memory backend with
        ``track_keys``; see the disk backend for its costs.
        """
        try:
            key = self._backend.random_key(_encode_prefix(prefix))
            return "" if key is None else _decode_key(key)
        except BaseException as exc:
            raise self._failure(exc, "random_key")  # noqa: B904

    # -- more atomic operations ---------------------------------------------

    def set_if_absent(self, key: str, value: Any, *, ttl: float | None = None) -> bool:
        """Atomically store ``value`` only if ``key`` is absent (or expired); True when it was stored.

        ``ttl`` applies only when it stores.
        """
        try:
            stored = self._backend.get_or_set(encode_key(key), self._dumps(value), None if ttl is None else _check_expiry(ttl))
            return not _pair(stored)[1]
        except BaseException as exc:
            raise self._failure(exc, "set_if_absent", key)  # noqa: B904

    def compare_and_swap_detailed(self, key: str, old: Any, new: Any, *, ttl: float | None = None) -> CompareAndSwapResult:
        """As ``compare_and_swap``, telling why: ``(swapped, reason, existed, current)``.

        ``reason`` is ``"swapped"`` or ``"mismatch"``; ``existed`` whether
        the key was stored before the call; ``current`` the value it held
        when nothing was swapped (None when absent, and after a swap).
        ``ttl`` as in ``compare_and_swap``.
        """
        try:
            expected = None if old is None else self._dumps(old)
            ms = None if ttl is None else _check_expiry(ttl)
            swapped, before = _pair(self._backend.compare_and_swap_detailed(encode_key(key), expected, self._dumps(new), ms))
            if swapped:
                return _new(CompareAndSwapResult, (True, "swapped", before is not None, None))
            current = None if before is None else self._loads(before)
            return _new(CompareAndSwapResult, (False, "mismatch", before is not None, current))
        except BaseException as exc:
            raise self._failure(exc, "compare_and_swap_detailed", key)  # noqa: B904

    def compare_and_delete_detailed(self, key: str, old: Any) -> CompareAndDeleteResult:
        """As ``compare_and_delete``, telling why: ``(deleted, reason, existed, current)``; see compare_and_swap_detailed."""
        try:
            deleted, before = _pair(self._backend.compare_and_delete_detailed(encode_key(key), self._dumps(old)))
            if deleted:
                return _new(CompareAndDeleteResult, (True, "deleted", True, None))
            current = None if before is None else self._loads(before)
            return _new(CompareAndDeleteResult, (False, "mismatch", before is not None, current))
        except BaseException as exc:
            raise self._failure(exc, "compare_and_delete_detailed", key)  # noqa: B904

    # -- expiring keys ----------------------------------------------------------

    def expire(self, key: str, ttl: float) -> bool:
        """Atomically make ``key`` expire ``ttl`` seconds from now, replacing any expiry; False when the key is absent.

        From its expiry on, a key is absent for every operation of every
        process at once (the rules per method: docs/ttl.md). Raises
        InvalidArgumentError for a ttl that is not more than 0 (or past ten years).
        """
        try:
            return self._backend.expire(encode_key(key), _check_expiry(ttl))
        except BaseException as exc:
            raise self._failure(exc, "expire", key)  # noqa: B904

    def persist(self, key: str) -> bool:
        """Atomically drop ``key``'s expiry; True when it had one, False when it had none or is absent."""
        try:
            return self._backend.persist(encode_key(key))
        except BaseException as exc:
            raise self._failure(exc, "persist", key)  # noqa: B904

    def ttl(self, key: str) -> float | None:
        """The seconds ``key`` has left before it expires (more than 0), or None when it never expires.

        Raises KeyNotFoundError when the key is absent (or expired). The
        figure is read at one moment; by the time it is used, less is left.
        """
        try:
            exists, remaining = _pair(self._backend.expiry(encode_key(key)))
            if not exists:
                raise KeyNotFoundError("key not found")
            return None if remaining is None else remaining / 1000
        except BaseException as exc:
            raise self._failure(exc, "ttl", key)  # noqa: B904

    def purge_expired(self, limit: int = 0) -> int:
        """Remove entries whose expiry has passed, at most ``limit`` (all when <= 0); how many were removed.

        Never needed for correctness: an expired key is already absent for
        every operation. It frees the room they take (and the quota they
        count against). Runs as short atomic steps of a few hundred entries
        with pauses between, so other greenlets keep running; the whole is
        not atomic. Writes also remove a few expired entries on their way,
        and the Locust plugin purges in the background (``--kv-purge-interval``).
        """
        try:
            wanted = _check_limit(limit)
            removed = 0
            while wanted <= 0 or removed < wanted:
                step = PURGE_BATCH if wanted <= 0 else min(PURGE_BATCH, wanted - removed)
                done = self._backend.purge_expired(step)
                if type(done) is not int or not 0 <= done <= step:
                    raise UnexpectedStoreOutputError("backend returned a result outside its contract")
                removed += done
                if done < step:
                    break
                _pause()
            return removed
        except BaseException as exc:
            raise self._failure(exc, "purge_expired")  # noqa: B904

    # -- batches --------------------------------------------------------------

    def get_many(self, keys: builtins.list[str]) -> builtins.list[Lookup]:
        """``(key, value, found)`` for each key, in order, all read at one moment.

        ``value`` is None when the key is absent. At most 100,000 keys.
        """
        try:
            raw = _encode_keys(keys)
            if not raw:
                return []
            values = self._backend.get_many(raw)
            if type(values) is not list or len(values) != len(raw):
                raise UnexpectedStoreOutputError("backend returned a result outside its contract")
            loads, new, lookup = self._loads, _new, Lookup
            return [
                new(lookup, (key, None, False)) if data is None else new(lookup, (key, loads(data), True))
                for key, data in zip(keys, values)
            ]
        except BaseException as exc:
            raise self._failure(exc, "get_many")  # noqa: B904

    def set_many(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]], *, ttl: float | None = None) -> int:
        """Store every ``(key, value)`` (a dict or pairs), all or nothing, atomically; how many were given.

        Every key and value is checked before the store is touched: one bad
        item and nothing is written. A key given twice keeps its last value.
        At most 100,000 items. Every item gets the expiry ``set`` would give
        it (``ttl`` None: none).
        """
        try:
            ms = None if ttl is None else _check_expiry(ttl)
            pairs = items.items() if isinstance(items, dict) else items
            if isinstance(pairs, (str, bytes)) or not hasattr(pairs, "__iter__"):
                raise InvalidArgumentError(f"items must be a dict or (key, value) pairs, not {type(items).__name__}")
            dumps = self._dumps
            encoded = []
            for pair in pairs:
                if not isinstance(pair, tuple) or len(pair) != 2:
                    raise InvalidArgumentError("items must be (key, value) pairs")
                encoded.append((encode_key(pair[0]), dumps(pair[1])))
                if len(encoded) > MAX_BATCH:
                    raise InvalidArgumentError(f"a batch takes at most {MAX_BATCH} items")
            if encoded:
                self._backend.set_many(encoded, ms)
            return len(encoded)
        except BaseException as exc:
            raise self._failure(exc, "set_many")  # noqa: B904

    def delete_many(self, keys: builtins.list[str]) -> int:
        """Remove every key atomically; how many existed (a key given twice counts once)."""
        try:
            raw = _encode_keys(keys)
            return self._backend.delete_many(raw) if raw else 0
        except BaseException as exc:
            raise self._failure(exc, "delete_many")  # noqa: B904

    # -- prefixes ---------------------------------------------------------------

    def count(self, prefix: str = "", *, start: str | None = None, end: str | None = None) -> int:
        """The number of keys starting with ``prefix`` and in ``[start, end)`` (all keys by default); the range as ``scan``'s.

        O(log n) on memory and redis; on disk, O(1) for the whole store and a
        walk of the matching keys otherwise (see docs/disk-backend.md).
        """
        try:
            count = self._backend.count(*_key_range(prefix, start, end))
            if type(count) is not int or count < 0:
                raise UnexpectedStoreOutputError("backend returned a count that is not a count")
            return count
        except BaseException as exc:
            raise self._failure(exc, "count")  # noqa: B904

    def scan_keys(
        self,
        prefix: str = "",
        limit: int = 0,
        cursor: str = "",
        *,
        start: str | None = None,
        end: str | None = None,
        offset: int = 0,
    ) -> KeyScanPage:
        """As ``scan``, keys only: ``(keys, cursor, done)``, with the same range, offset and cursors."""
        try:
            low, high = _key_range(prefix, start, end)
            limit = _check_limit(limit)
            skip = _check_offset(offset)
            keys, more = _pair(self._backend.scan_keys(_resume(low, cursor), high, skip, limit))
            names = _decode_keys(keys)
            if more and keys:
                return KeyScanPage(names, encode_cursor(keys[-1]), False)
            return KeyScanPage(names, "", True)
        except BaseException as exc:
            raise self._failure(exc, "scan_keys")  # noqa: B904

    def list_keys(
        self, prefix: str = "", limit: int = 0, *, start: str | None = None, end: str | None = None, offset: int = 0
    ) -> builtins.list[str]:
        """The first ``limit`` keys (all when <= 0) after ``offset``, of those starting with ``prefix`` in ``[start, end)``, ascending."""
        try:
            low, high = _key_range(prefix, start, end)
            limit = _check_limit(limit)
            skip = _check_offset(offset)
            keys, _ = _pair(self._backend.scan_keys(low, high, skip, limit))
            return _decode_keys(keys)
        except BaseException as exc:
            raise self._failure(exc, "list_keys")  # noqa: B904

    def random_keys(self, prefix: str = "", count: int = 1, unique: bool = True) -> builtins.list[str]:
        """``count`` keys starting with ``prefix``, drawn uniformly in one atomic read.

        ``unique``: distinct keys (fewer when fewer match), in random order.
        Else ``count`` independent draws, repeats possible (empty when none
        matches). Not exclusive: use ``claim_random`` or ``pop_random`` to
        hand keys out.
        """
        try:
            if not isinstance(unique, bool):
                raise InvalidArgumentError(f"unique must be a bool, not {type(unique).__name__}")
            keys = self._backend.random_keys(_encode_prefix(prefix), _check_count(count), unique)
            return _decode_keys(keys)
        except BaseException as exc:
            raise self._failure(exc, "random_keys")  # noqa: B904

    def pop_random(self, prefix: str = "") -> Entry | None:
        """Atomically remove one uniformly chosen key starting with ``prefix`` that no lease holds; its entry, or None.

        Each entry is handed to exactly one caller across every process
        sharing the store: a queue of test data consumed once.
        """
        try:
            rows = self._backend.pop_random(_encode_prefix(prefix), 1)
            if not rows:
                return None
            key, value = rows[0]
            return _new(Entry, (_decode_key(key), self._loads(value)))
        except BaseException as exc:
            raise self._failure(exc, "pop_random")  # noqa: B904

    def pop_random_many(self, prefix: str = "", count: int = 1) -> builtins.list[Entry]:
        """As ``pop_random``, up to ``count`` distinct entries in one atomic operation (fewer when fewer are free)."""
        try:
            rows = self._backend.pop_random(_encode_prefix(prefix), _check_count(count))
            loads = self._loads
            return [_new(Entry, (_decode_key(k), loads(v))) for k, v in rows]
        except BaseException as exc:
            raise self._failure(exc, "pop_random_many")  # noqa: B904

    def delete_prefix(self, prefix: str, limit: int = 0) -> DeletePrefixResult:
        """Remove the keys starting with ``prefix``, at most ``limit`` of them (all when <= 0).

        Runs in short atomic steps (a few milliseconds each) with other calls
        between them, so a large prefix never stalls the run; the whole is not
        atomic. Returns ``(deleted, done)``: done is True when no key with
        the prefix remained after the last step. An empty prefix is refused
        (use ``clear``).
        """
        try:
            raw = _encode_prefix(prefix)
            if not raw:
                raise InvalidArgumentError("delete_prefix needs a non-empty prefix; use clear() to remove every key")
            deleted, done = _pair(self._backend.delete_prefix(raw, _check_limit(limit)))
            return _new(DeletePrefixResult, (deleted, done))
        except BaseException as exc:
            raise self._failure(exc, "delete_prefix")  # noqa: B904

    # -- leases (claims) ------------------------------------------------------

    def _owner(self, owner: str | None) -> bytes:
        if owner is None:
            default = self._store.default_owner
            return b"" if default is None else _check_owner(default())
        return _check_owner(owner)

    def _claim(self, record: ClaimRecord, owner: bytes) -> Claim:
        """One granted lease as a Claim (the hot path of claim_key and claim_random)."""
        key, value, token, expires_ms = record
        try:
            name = key.decode()
        except UnicodeDecodeError:
            name = _decode_key(key)
        claim: Claim = _new(Claim, (name, self._loads(value), token, owner.decode() if owner else "", expires_ms / 1000))
        hook = self._store.on_claim
        if hook is not None:
            hook([claim])
        return claim

    def _ref(self, claim: object) -> tuple[bytes, int]:
        """The backend's reference to one Claim, checked as _claim_refs checks a batch."""
        if type(claim) is not Claim:
            return _claim_refs([claim])[1][0]
        token = claim.token
        if type(token) is not int or token < 1:
            raise InvalidArgumentError("a Claim's token must be a positive int")
        return encode_key(claim.key), token

    def _end_one(self, claim: Claim, flags: builtins.list[bool]) -> None:
        """After one lease was released or completed: tell the plugin, and raise ClaimLostError if it was not live."""
        if type(flags) is not list or len(flags) != 1:
            raise UnexpectedStoreOutputError("backend returned a result outside its contract")
        hook = self._store.on_unclaim
        if hook is not None:
            hook([claim])
        if not flags[0]:
            raise ClaimLostError("the claim is no longer held")

    def _claims(self, records: builtins.list[ClaimRecord], owner: bytes) -> builtins.list[Claim]:
        loads = self._loads
        name = owner.decode()
        claims = [
            _new(Claim, (_decode_key(r[0]), loads(r[1]), r[2], name, r[3] / 1000)) for r in records
        ]
        hook = self._store.on_claim
        if hook is not None and claims:
            hook(claims)
        return claims

    def claim_key(self, key: str, ttl: float = 30.0, owner: str | None = None) -> Claim | None:
        """Lease ``key`` for ``ttl`` seconds, if it exists and no live lease holds it; the Claim, or None.

        While the lease lasts no other ``claim_*`` or ``pop_random`` takes
        the key, in any process sharing the store. Every other operation
        ignores leases (the key can still be read and written). The lease
        ends with ``release_claim``, ``complete_claim``, the removal of the
        key, or at ``expires_at``; with the Locust plugin, also when the user
        that made it stops. ``owner`` is a label for people (at most 256
        bytes; the plugin fills in the user by default).

        Raises InvalidArgumentError for a ttl that is not more than 0 and at
        most a week, or a bad owner.
        """
        try:
            owner_bytes = self._owner(owner) if owner is not None or self._store.default_owner is not None else b""
            records = self._backend.claim_keys([encode_key(key)], _check_ttl(ttl), owner_bytes)
            record = records[0] if records else None
            return None if record is None else self._claim(record, owner_bytes)
        except BaseException as exc:
            raise self._failure(exc, "claim_key", key)  # noqa: B904

    def claim_keys(self, keys: builtins.list[str], ttl: float = 30.0, owner: str | None = None) -> builtins.list[Claim]:
        """Lease every key of ``keys`` that exists and is free, in one atomic operation; the Claims granted, in order.

        A key absent or held is left out: compare the claims' keys with the
        ones asked for. As ``claim_key`` otherwise.
        """
        try:
            owner_bytes = self._owner(owner)
            raw = _encode_keys(keys)
            if not raw:
                return []
            records = self._backend.claim_keys(raw, _check_ttl(ttl), owner_bytes)
            return self._claims([r for r in records if r is not None], owner_bytes)
        except BaseException as exc:
            raise self._failure(exc, "claim_keys")  # noqa: B904

    def claim_random(self, prefix: str = "", ttl: float = 30.0, owner: str | None = None) -> Claim | None:
        """Lease one key starting with ``prefix``, chosen uniformly among the free ones; None when none is free.

        The exclusive form of ``random_key``: two callers never hold the same
        key at once. As ``claim_key`` otherwise.
        """
        try:
            owner_bytes = self._owner(owner) if owner is not None or self._store.default_owner is not None else b""
            records = self._backend.claim_random(_encode_prefix(prefix), 1, _check_ttl(ttl), owner_bytes)
            return self._claim(records[0], owner_bytes) if records else None
        except BaseException as exc:
            raise self._failure(exc, "claim_random")  # noqa: B904

    def claim_random_many(
        self, prefix: str = "", count: int = 1, ttl: float = 30.0, owner: str | None = None
    ) -> builtins.list[Claim]:
        """Lease up to ``count`` distinct free keys starting with ``prefix``, chosen uniformly, in one atomic operation."""
        try:
            owner_bytes = self._owner(owner)
            records = self._backend.claim_random(_encode_prefix(prefix), _check_count(count), _check_ttl(ttl), owner_bytes)
            return self._claims(records, owner_bytes)
        except BaseException as exc:
            raise self._failure(exc, "claim_random_many")  # noqa: B904

    def _ended(self, claims: builtins.list[Claim], flags: builtins.list[bool]) -> ClaimBatch:
        if type(flags) is not list or len(flags) != len(claims):
            raise UnexpectedStoreOutputError("backend returned a result outside its contract")
        hook = self._store.on_unclaim
        if hook is not None and claims:
            hook(claims)
        return _new(ClaimBatch, ([c for c, ok in zip(claims, flags) if ok], [c for c, ok in zip(claims, flags) if not ok]))

    def release_claims(self, claims: builtins.list[Claim]) -> ClaimBatch:
        """End each lease, leaving its key for the next claimer, in one atomic operation; ``(done, lost)``.

        ``lost`` holds the leases that were no longer live (see ClaimLostError).
        """
        try:
            given, refs = _claim_refs(claims)
            if not refs:
                return _new(ClaimBatch, ([], []))
            return self._ended(given, self._backend.release_claims(refs))
        except BaseException as exc:
            raise self._failure(exc, "release_claims")  # noqa: B904

    def release_claim(self, claim: Claim) -> None:
        """End the lease, leaving the key for the next claimer. Raises ClaimLostError when it was no longer live."""
        try:
            self._end_one(claim, self._backend.release_claims([self._ref(claim)]))
        except BaseException as exc:
            raise self._failure(exc, "release_claim", _key_of(claim))  # noqa: B904

    def complete_claims(self, claims: builtins.list[Claim], delete: bool = False) -> ClaimBatch:
        """End each lease as done (with ``delete``, removing its key too), in one atomic operation; ``(done, lost)``."""
        try:
            if not isinstance(delete, bool):
                raise InvalidArgumentError(f"delete must be a bool, not {type(delete).__name__}")
            given, refs = _claim_refs(claims)
            if not refs:
                return _new(ClaimBatch, ([], []))
            return self._ended(given, self._backend.complete_claims(refs, delete))
        except BaseException as exc:
            raise self._failure(exc, "complete_claims")  # noqa: B904

    def complete_claim(self, claim: Claim, delete: bool = False) -> None:
        """End the lease as done; with ``delete``, remove the key in the same atomic step (consumed test data).

        Raises ClaimLostError when the lease was no longer live: then nothing
        was deleted.
        """
        try:
            if delete is not False and delete is not True:
                raise InvalidArgumentError(f"delete must be a bool, not {type(delete).__name__}")
            self._end_one(claim, self._backend.complete_claims([self._ref(claim)], delete))
        except BaseException as exc:
            raise self._failure(exc, "complete_claim", _key_of(claim))  # noqa: B904

    def renew_claims(self, claims: builtins.list[Claim], ttl: float) -> ClaimBatch:
        """Extend each live lease to now + ``ttl`` seconds, keeping its token, in one atomic operation.

        ``done`` holds the renewed Claims with their new ``expires_at``;
        ``lost`` those no longer live.
        """
        try:
            ttl_ms = _check_ttl(ttl)
            given, refs = _claim_refs(claims)
            if not refs:
                return _new(ClaimBatch, ([], []))
            ends = self._backend.renew_claims(refs, ttl_ms)
            if type(ends) is not list or len(ends) != len(given):
                raise UnexpectedStoreOutputError("backend returned a result outside its contract")
            done = [c._replace(expires_at=end / 1000) for c, end in zip(given, ends) if end is not None]
            lost = [c for c, end in zip(given, ends) if end is None]
            return _new(ClaimBatch, (done, lost))
        except BaseException as exc:
            raise self._failure(exc, "renew_claims")  # noqa: B904

    def renew_claim(self, claim: Claim, ttl: float) -> Claim:
        """Extend the lease to now + ``ttl`` seconds; the Claim with its new ``expires_at``. Raises ClaimLostError when no longer live."""
        try:
            ttl_ms = _check_ttl(ttl)
            ends = self._backend.renew_claims([self._ref(claim)], ttl_ms)
            if type(ends) is not list or len(ends) != 1:
                raise UnexpectedStoreOutputError("backend returned a result outside its contract")
            if ends[0] is None:
                raise ClaimLostError("the claim is no longer held")
            return claim._replace(expires_at=ends[0] / 1000)
        except BaseException as exc:
            raise self._failure(exc, "renew_claim", _key_of(claim))  # noqa: B904

    def allocation_stats(self, prefix: str = "") -> AllocationStats:
        """``(total, claimable, claimed, expired)`` for the keys starting with ``prefix``, read atomically.

        Costs a walk of the leases (and, on disk, of the matching keys): a
        check for the end of a run, not for every task.
        """
        try:
            total, claimable, claimed, expired = self._backend.allocation_stats(_encode_prefix(prefix))
            return _new(AllocationStats, (total, claimable, claimed, expired))
        except BaseException as exc:
            raise self._failure(exc, "allocation_stats")  # noqa: B904

    # -- named locks (leases on keys under LOCK_PREFIX; see locust_kv/locks.py) ----------

    def lock(
        self,
        name: str,
        ttl: float = 30.0,
        owner: str | None = None,
        wait: float | None = 30.0,
        auto_renew: bool = False,
    ) -> Lock:
        """Take the named lock, waiting up to ``wait`` seconds; the held :class:`~locust_kv.locks.Lock`.

        Use it as ``with kv.lock("report", ttl=10) as lock:``, which releases
        the lock on exit. One holder at a time across every greenlet,
        thread, process and host sharing the store. The lock is a lease of
        ``ttl`` seconds on the key ``"locust_kv:lock:" + name``: it ends at
        release, at ``expires_at`` unless renewed (a holder that died frees
        it by then), when the key is removed (``clear``, ``restore``), and,
        with the Locust plugin, when the user that took it stops. Its
        ``token`` is a fencing token, larger for every later holder.

        ``wait``: seconds to keep trying (``0``: one try; ``None``: as long as
        it takes). Tries are two atomic steps (create the key if absent,
        claim it), repeated after waits that double from 2 ms to 100 ms,
        with jitter. ``auto_renew``: a background renewer extends the lease
        every ``ttl / 3`` seconds until release (a daemon thread: a
        greenlet under Locust's gevent patching); otherwise call
        ``lock.renew()`` before ``expires_at``. ``owner`` labels the holder for people (the plugin
        fills in the user by default).

        Timed as one operation, waits included, with ``--kv-report``.

        Raises LockTimeoutError (transient) when the lock was still held by
        another when ``wait`` ran out; InvalidKeyError / KeyTooLongError for a
        name that is not a non-empty str of at most 496 bytes of UTF-8;
        InvalidArgumentError for a bad ttl, wait, owner or auto_renew;
        ReadOnlyStoreError on a read-only handle.
        """
        try:
            key = lock_key(name)
            ttl_ms = _check_ttl(ttl)
            limit = check_wait(wait)
            if auto_renew is not False and auto_renew is not True:
                raise InvalidArgumentError(f"auto_renew must be a bool, not {type(auto_renew).__name__}")
            owner_bytes = self._owner(owner)
            backend = self._backend
            deadline = None if limit is None else monotonic() + limit
            delays = poll_delays()
            while True:
                _pair(backend.get_or_set(key, LOCK_VALUE))
                records = backend.claim_keys([key], ttl_ms, owner_bytes)
                if type(records) is not list or len(records) != 1:
                    raise UnexpectedStoreOutputError("backend returned a result outside its contract")
                record = records[0]
                if record is not None:
                    break
                delay = next(delays)
                if deadline is not None:
                    left = deadline - monotonic()
                    if left <= 0:
                        raise LockTimeoutError("the lock was not acquired within the wait")
                    delay = min(delay, left)
                sleep(delay)
            # The Claim carries no value: the lock's key holds LOCK_VALUE, and a
            # granted lease must never be lost to a value that fails to decode.
            claim: Claim = _new(Claim, (key.decode(), None, record.token, owner_bytes.decode(), record.expires_ms / 1000))
            hook = self._store.on_claim
            if hook is not None:
                hook([claim])
            held = Lock(self, name, claim, ttl_ms / 1000)
            if auto_renew:
                held._start_renewer(functools.partial(KV.renew_lock, self, held))  # KV's own: not timed
            return held
        except BaseException as exc:
            raise self._failure(exc, "lock", _lock_key_of(name))  # noqa: B904

    def release_lock(self, lock: Lock) -> None:
        """Release a held lock: end its lease and remove its key, in one atomic step. A second release does nothing.

        Stops the lock's background renewer first. Raises LockLostError (a
        kind of ClaimLostError) when the lease had already ended (expired,
        taken over by another holder, its key removed): nothing was removed,
        and the work done under the lock may have overlapped another
        holder's. ``lock.released`` is True afterwards either way.
        """
        try:
            _check_lock(lock, self)
            if lock.released:
                return
            lock._ending = True
            lock._stop_renewer()
            done = False
            if not lock.lost:
                flags = self._backend.complete_claims([(encode_key(lock.key), lock.token)], True)
                if type(flags) is not list or len(flags) != 1:
                    raise UnexpectedStoreOutputError("backend returned a result outside its contract")
                done = flags[0]
            lock.released = True
            hook = self._store.on_unclaim
            if hook is not None:
                hook([lock._claim])
            if not done:
                lock.lost = True
                raise LockLostError("the lock's lease ended before it was released")
        except BaseException as exc:
            raise self._failure(exc, "release_lock", _lock_key_of(lock))  # noqa: B904

    def renew_lock(self, lock: Lock, ttl: float | None = None) -> Lock:
        """Extend a held lock's lease to now + ``ttl`` seconds (default: ``lock.ttl``), keeping its token; the Lock, updated.

        A ``ttl`` given becomes the lock's ``ttl`` for later renewals.
        Raises LockLostError when the lease had ended (or the lock was
        released): the lock is not held any more, so take it again.
        """
        try:
            _check_lock(lock, self)
            ttl_ms = _check_ttl(lock.ttl if ttl is None else ttl)
            if lock.released or lock.lost:
                raise LockLostError("the lock is not held")
            ends = self._backend.renew_claims([(encode_key(lock.key), lock.token)], ttl_ms)
            if type(ends) is not list or len(ends) != 1:
                raise UnexpectedStoreOutputError("backend returned a result outside its contract")
            if ends[0] is None:
                if not lock._ending:  # a release racing its own renewer is not a loss
                    lock.lost = True
                raise LockLostError("the lock's lease ended before it was renewed")
            lock.expires_at = ends[0] / 1000
            lock._claim = lock._claim._replace(expires_at=lock.expires_at)
            lock.ttl = ttl_ms / 1000
            return lock
        except BaseException as exc:
            raise self._failure(exc, "renew_lock", _lock_key_of(lock))  # noqa: B904

    def lock_status(self, name: str) -> LockStatus:
        """Whether the named lock is held, and by whom: ``(name, held, owner, token, expires_at)``, read atomically.

        ``owner``, ``token`` and ``expires_at`` are None when it is free
        (never taken, released, or its lease expired). Changes nothing;
        works on a read-only handle. Raises InvalidKeyError / KeyTooLongError
        for a bad name.
        """
        try:
            lease = self._backend.read_lease(lock_key(name))
            if lease is None:
                return _new(LockStatus, (name, False, None, None, None))
            if type(lease) is not tuple or len(lease) != 3:
                raise UnexpectedStoreOutputError("backend returned a result outside its contract")
            token, expires_ms, owner = lease
            return _new(LockStatus, (name, True, owner.decode(errors="replace"), token, expires_ms / 1000))
        except BaseException as exc:
            raise self._failure(exc, "lock_status", _lock_key_of(name))  # noqa: B904

    def stats(self) -> StoreStats:
        """``(keys, bytes, claims, expired_claims, operations, max_keys, max_bytes)`` of the store.

        ``keys`` and ``bytes`` are the usage the quota counts (``bytes``: key
        plus value bytes on memory and redis, the pages of the entries'
        database on disk); ``max_keys`` and ``max_bytes`` the quota this
        handle was opened with, None when it has none.

        ``operations`` counts this process's calls per operation, over every
        handle, while the store reports its timings (with the Locust plugin,
        or after ``locust_kv.store.set_reporter``); empty otherwise, so that
        plain handles pay nothing for counting.
        """
        try:
            backend = self._store.backend
            raw = self._backend.stats()
            return _new(
                StoreStats,
                (
                    raw["keys"], raw["bytes"], raw["claims"], raw["expired_claims"], dict(self._store.operations),
                    backend.max_keys, backend.max_bytes,
                ),
            )
        except BaseException as exc:
            raise self._failure(exc, "stats")  # noqa: B904

    def rebuild_key_list(self) -> bool:
        """Rebuild the key index ``random_key`` uses from the stored keys. Returns True."""
        try:
            self._backend.rebuild_key_list()
            return True
        except BaseException as exc:
            raise self._failure(exc, "rebuild_key_list")  # noqa: B904

    # -- snapshots ------------------------------------------------------------

    def backup(self, file_name: str | os.PathLike[str] | None = None, allow_concurrent_writes: bool = False) -> BackupSummary:
        """Write every entry to the snapshot file ``file_name``; a :class:`BackupSummary`.

        ``file_name`` defaults to ``locust-kv.snapshot`` in the working
        directory; missing directories are created. The file is replaced
        atomically: a failed backup leaves no partial file and any earlier
        snapshot intact. With ``allow_concurrent_writes`` False the snapshot
        is point in time: on the memory backend writers fail fast with
        BackupInProgressError meanwhile; on the disk backend they go on and
        the copy reads one LMDB snapshot. With it True writers are never
        blocked, and ``best_effort`` and ``warning`` say when the copy is
        not point in time. See docs/snapshots.md.

        Raises BackupOptionsRequiredError for options it cannot use,
        BackupInProgressError while another backup runs (RestoreInProgressError
        during a restore), SnapshotPermissionError, SnapshotIOError or
        SnapshotExportError when the file cannot be written.
        """
        try:
            path = snapshot.check_backup_options(file_name, allow_concurrent_writes)
            return snapshot.backup(self._backend, path, allow_concurrent_writes, self._store.serializer.name)
        except BaseException as exc:
            raise self._failure(exc, "backup")  # noqa: B904

    def restore(self, file_name: str | os.PathLike[str] | None = None, max_entries: int = 0, max_bytes: int = 0) -> RestoreSummary:
        """Replace the whole dataset with the snapshot ``file_name``; a :class:`RestoreSummary`.

        All or nothing: on any error the data is exactly as before. The
        budgets (0 means no cap; bytes count key plus value lengths) are
        checked against the snapshot before anything is applied. Writers
        fail fast with RestoreInProgressError meanwhile; ``random_key`` sees
        the restored keys at once. ``file_name`` defaults as for ``backup``.

        Raises RestoreOptionsRequiredError for options it cannot use,
        SnapshotNotFoundError, SnapshotPermissionError, SnapshotReadError (a
        truncated, altered, foreign or unknown-version file),
        SnapshotBudgetExceededError, SnapshotIOError, and
        BackupInProgressError or RestoreInProgressError while another backup
        or restore runs. QuotaExceededError when the snapshot holds more
        entries than the handle's ``max_keys`` or more key+value bytes than
        its ``max_bytes`` (checked against the header first; the backend
        checks the data it loaded again before the switch, so a disk store
        whose pages would pass ``max_bytes`` is refused too): nothing changed.
        """
        try:
            path = snapshot.check_restore_options(file_name, max_entries, max_bytes)
            _check_restore_quota(self._store.backend, path)
            return snapshot.restore(
                self._backend, path, max_entries, max_bytes, serialization=self._store.serializer.name
            )
        except BaseException as exc:
            raise self._failure(exc, "restore")  # noqa: B904

    # -- lifecycle ------------------------------------------------------------

    def close(self) -> None:
        """Close this handle; later calls on it raise StoreClosedError.

        Other handles on the store keep working; the store itself closes with
        its last handle (a memory store's data is then dropped). Closing twice
        does nothing.
        """
        if self._backend is _CLOSED:
            return
        self._backend = _CLOSED
        _release(self._store)


_OPERATIONS: Final = (
    "get",
    "set",
    "delete",
    "exists",
    "increment_by",
    "get_or_set",
    "swap",
    "compare_and_swap",
    "delete_if_exists",
    "compare_and_delete",
    "clear",
    "size",
    "scan",
    "list",
    "random_key",
    "rebuild_key_list",
    "backup",
    "restore",
    "set_if_absent",
    "compare_and_swap_detailed",
    "compare_and_delete_detailed",
    "expire",
    "persist",
    "ttl",
    "purge_expired",
    "get_many",
    "set_many",
    "delete_many",
    "count",
    "scan_keys",
    "list_keys",
    "random_keys",
    "pop_random",
    "pop_random_many",
    "delete_prefix",
    "claim_key",
    "claim_keys",
    "claim_random",
    "claim_random_many",
    "release_claim",
    "release_claims",
    "complete_claim",
    "complete_claims",
    "renew_claim",
    "renew_claims",
    "allocation_stats",
    "lock",
    "release_lock",
    "renew_lock",
    "lock_status",
    "stats",
)
"""The operations a reporting store times, by name."""


_TIMED_TEMPLATE = """
def timed({parameters}):
    _store_ = self._store
    _operations_ = _store_.operations
    _operations_[_name_] = _operations_.get(_name_, 0) + 1
    _start_ = _perf_counter_()
    try:
        _result_ = _method_({arguments})
    except Exception as _error_:
        _reporter_ = _store_.reporter
        if _reporter_ is not None:
            _reporter_(_name_, _perf_counter_() - _start_, _error_)
        raise
    _reporter_ = _store_.reporter
    if _reporter_ is not None:
        _reporter_(_name_, _perf_counter_() - _start_, None)
    return _result_
"""
# The template's own names are wrapped in underscores: a method's parameter
# (``name`` of ``lock``, ``start``...) must never shadow them.


def _timed(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` timed for the store's reporter, with ``method``'s own parameters.

    Generated with the method's exact signature rather than ``*args,
    **kwargs``: forwarding those costs more than the memory backend's whole
    ``get`` on CPython 3.11, and this runs on every reported call.
    """
    namespace: dict[str, Any] = {"_method_": method, "_name_": name, "_perf_counter_": perf_counter}
    parameters: list[str] = []
    arguments: list[str] = []
    starred = False
    for index, parameter in enumerate(inspect.signature(method).parameters.values()):
        if parameter.name.startswith("_"):
            raise TypeError(f"{name}'s parameter {parameter.name!r} would shadow a name of the timing wrapper")
        if parameter.kind is parameter.VAR_POSITIONAL:
            parameters.append(f"*{parameter.name}")
            arguments.append(f"*{parameter.name}")
            starred = True
        elif parameter.kind is parameter.VAR_KEYWORD:
            parameters.append(f"**{parameter.name}")
            arguments.append(f"**{parameter.name}")
        else:
            if parameter.kind is parameter.KEYWORD_ONLY and not starred:
                parameters.append("*")
                starred = True
            text = parameter.name
            if parameter.default is not parameter.empty:
                namespace[f"_default{index}"] = parameter.default
                text += f"=_default{index}"
            parameters.append(text)
            keyword = parameter.kind is parameter.KEYWORD_ONLY
            arguments.append(f"{parameter.name}={parameter.name}" if keyword else parameter.name)
    source = _TIMED_TEMPLATE.format(parameters=", ".join(parameters), arguments=", ".join(arguments))
    exec(compile(source, f"<timed {name}>", "exec"), namespace)  # noqa: S102 - our own template
    return functools.wraps(method)(namespace["timed"])


class _ReportingKV(KV):
    """A KV whose operations are timed and passed to the store's reporter."""

    __slots__ = ()


for _name in _OPERATIONS:
    setattr(_ReportingKV, _name, _timed(_name, getattr(KV, _name)))
del _name
