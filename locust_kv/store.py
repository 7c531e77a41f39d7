"""The front-end: ``open_kv`` and the :class:`KV` handle.

The front-end validates arguments, serializes values, maps failures to the
catalogue and, when a Locust run asks for it, times every operation. It
talks to a backend (:mod:`locust_kv.backends.base`) in bytes, one atomic
operation per call, and never knows which backend it has.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
import weakref
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final

from gevent.monkey import get_original

from .backends.base import MAX_KEY_BYTES
from .errors import (
    InvalidArgumentError,
    InvalidCursorError,
    InvalidKeyError,
    InvalidOptionsError,
    KeyNotFoundError,
    KeyTooLongError,
    KVError,
    KVOptionsConflictError,
    SerializerError,
    StoreClosedError,
    UnexpectedStoreOutputError,
    UnknownError,
    ValueNumberRequiredError,
)
from .options import DEFAULT_BACKEND, DEFAULT_SERIALIZATION, StoreOptions, configure_backend
from . import snapshot
from .results import BackupSummary, Entry, GetOrSetResult, RestoreSummary, ScanPage, SwapResult
from .serialization import get_serializer

if TYPE_CHECKING:
    from .backends.base import Backend
    from .serialization import Serializer

__all__ = ["KV", "Reporter", "open_kv", "open_stores", "read_marker", "set_reporter", "write_marker"]

Reporter = Callable[[str, float, "Exception | None"], None]
"""Called after every operation of a reporting store: (operation, seconds, error or None)."""

_allocate_lock = get_original("_thread", "allocate_lock")

# Builds a named tuple without the Python-level __new__ the class adds
# (about 150 ns a result on the hot path).
_new: Final = tuple.__new__


# ---------------------------------------------------------------------------
# Argument checks shared by every operation.


def _encode_key(key: object) -> bytes:
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
    return min(int.__int__(limit), MAX_SCAN_LIMIT)  # type: ignore[arg-type]


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


_registry: dict[object, _Store] = {}
_registry_lock = _allocate_lock()


def open_kv(
    backend: str = DEFAULT_BACKEND,
    path: str | os.PathLike[str] | None = None,
    serialization: str = DEFAULT_SERIALIZATION,
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
        serializer = get_serializer(serialization)
        spec = configure_backend(backend, options)
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
                    handle = KV(store)
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


_CLOSED: Final = _ClosedBackend()


class KV:
    """A handle on a shared key-value store. Get one from :func:`open_kv`.

    Every method is atomic with respect to every other call on the same store
    from any greenlet or thread of the process, and from every process that
    shares the store: on the disk backend every process on the host, on the
    redis backend every process on every host that reaches the server. Keys are non-empty str of at most 511 bytes of
    UTF-8. Every failure raises a :class:`~locust_kv.errors.KVError`.
    """

    __slots__ = ("__weakref__", "_backend", "_dumps", "_kind", "_loads", "_store")

    def __init__(self, store: _Store) -> None:
        self._store = store
        self._backend: Backend = store.backend
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

    def get(self, key: str) -> Any:
        """The value stored at ``key``.

        Raises KeyNotFoundError when absent, SerializerError when the stored
        bytes do not decode.
        """
        try:
            data = self._backend.get(_encode_key(key))
            if data is None:
                raise KeyNotFoundError("key not found")
            return self._loads(data)
        except BaseException as exc:
            raise self._failure(exc, "get", key)  # noqa: B904 - _failure chains the cause

    def set(self, key: str, value: Any) -> Any:
        """Store ``value`` at ``key``, replacing any value; returns ``value``.

        Raises UnsupportedValueTypeError or SerializerError for a value the
        serialization cannot store.
        """
        try:
            self._backend.set(_encode_key(key), self._dumps(value))
            return value
        except BaseException as exc:
            raise self._failure(exc, "set", key)  # noqa: B904

    def delete(self, key: str) -> bool:
        """Remove ``key``. Always True, also when the key was absent."""
        try:
            self._backend.delete(_encode_key(key))
            return True
        except BaseException as exc:
            raise self._failure(exc, "delete", key)  # noqa: B904

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""
        try:
            return self._backend.exists(_encode_key(key))
        except BaseException as exc:
            raise self._failure(exc, "exists", key)  # noqa: B904

    def increment_by(self, key: str, delta: int) -> int:
        """Atomically add ``delta`` to the integer counter at ``key``; the new value.

        A missing key counts as 0. The counter is stored as decimal text, so
        ``get`` returns an int under json and a str under string.

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
            return self._backend.increment_by(_encode_key(key), delta)
        except BaseException as exc:
            raise self._failure(exc, "increment_by", key)  # noqa: B904

    def get_or_set(self, key: str, value: Any) -> GetOrSetResult:
        """Atomically read ``key``, storing ``value`` first if it is absent.

        Returns ``(value, loaded)``: the stored value and True when the key
        existed (nothing was written), or the given value and False when it
        was just stored.
        """
        try:
            stored, loaded = _pair(self._backend.get_or_set(_encode_key(key), self._dumps(value)))
            return _new(GetOrSetResult, (self._loads(stored) if loaded else value, loaded))
        except BaseException as exc:
            raise self._failure(exc, "get_or_set", key)  # noqa: B904

    def swap(self, key: str, value: Any) -> SwapResult:
        """Atomically store ``value`` and return ``(previous, loaded)``.

        Always writes. ``previous`` is None and ``loaded`` False when the key
        was absent.
        """
        try:
            previous = self._backend.swap(_encode_key(key), self._dumps(value))
            if previous is None:
                return _new(SwapResult, (None, False))
            return _new(SwapResult, (self._loads(previous), True))
        except BaseException as exc:
            raise self._failure(exc, "swap", key)  # noqa: B904

    def compare_and_swap(self, key: str, old: Any, new: Any) -> bool:
        """Atomically store ``new`` if the stored value equals ``old``; whether it did.

        ``old=None`` means "only if the key is absent". Values compare by
        their serialized form; under json, dicts compare equal whatever the
        order of their keys. A missing key with ``old`` not None: False.
        """
        try:
            expected = None if old is None else self._dumps(old)
            return self._backend.compare_and_swap(_encode_key(key), expected, self._dumps(new))
        except BaseException as exc:
            raise self._failure(exc, "compare_and_swap", key)  # noqa: B904

    def delete_if_exists(self, key: str) -> bool:
        """Atomically remove ``key``; True only if it existed."""
        try:
            return self._backend.delete(_encode_key(key))
        except BaseException as exc:
            raise self._failure(exc, "delete_if_exists", key)  # noqa: B904

    def compare_and_delete(self, key: str, old: Any) -> bool:
        """Atomically remove ``key`` if its stored value equals ``old``; whether it did.

        Values compare by their serialized form, as in ``compare_and_swap``
        (under json, ``old=None`` matches a stored JSON null).
        """
        try:
            return self._backend.compare_and_delete(_encode_key(key), self._dumps(old))
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

    def scan(self, prefix: str = "", limit: int = 0, cursor: str = "") -> ScanPage:
        """One page of the keys starting with ``prefix``, ascending by UTF-8 bytes.

        ``limit`` <= 0 returns every remaining entry. ``cursor`` is ``""`` for
        the first page, then the cursor of the previous page: the scan resumes
        strictly after that page's last key. The last page has cursor ``""``
        and ``done`` True. Each page is its own atomic read: under concurrent
        writes, a paged scan returns no key twice and skips no key that existed,
        unchanged, for the whole scan.

        Raises InvalidCursorError for a cursor this method did not return, and
        InvalidArgumentError for a prefix or limit of the wrong type.
        """
        try:
            return self._scan(prefix, limit, cursor)
        except BaseException as exc:
            raise self._failure(exc, "scan")  # noqa: B904

    def _scan(self, prefix: str, limit: int, cursor: str) -> ScanPage:
        raw_prefix = _encode_prefix(prefix)
        limit = _check_limit(limit)
        if type(cursor) is not str and isinstance(cursor, str):
            cursor = str.__str__(cursor)  # a subclass counts by its characters, whatever its methods do
        start = decode_cursor(cursor) + b"\x00" if type(cursor) is not str or cursor != "" else b""
        rows, more = _pair(self._backend.scan(raw_prefix, start, limit))
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

    def list(self, prefix: str = "", limit: int = 0) -> list[Entry]:
        """The first ``limit`` entries (all when <= 0) whose key starts with ``prefix``, ascending."""
        try:
            return self._scan(prefix, limit, "").entries
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
        or restore runs.
        """
        try:
            path = snapshot.check_restore_options(file_name, max_entries, max_bytes)
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
        self._backend = _CLOSED  # type: ignore[assignment]
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
)
"""The operations a reporting store times, by name."""


def _timed(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def timed(self: KV, *args: Any, **kwargs: Any) -> Any:
        start = perf_counter()
        try:
            result = method(self, *args, **kwargs)
        except Exception as exc:
            reporter = self._store.reporter
            if reporter is not None:
                reporter(name, perf_counter() - start, exc)
            raise
        reporter = self._store.reporter
        if reporter is not None:
            reporter(name, perf_counter() - start, None)
        return result

    return timed


class _ReportingKV(KV):
    """A KV whose operations are timed and passed to the store's reporter."""

    __slots__ = ()


for _name in _OPERATIONS:
    setattr(_ReportingKV, _name, _timed(_name, getattr(KV, _name)))
del _name
