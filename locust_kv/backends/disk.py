"""The disk backend: one LMDB environment shared by every process on the host.

The store is one LMDB file (``subdir=False``) with its lock file beside it
(``<path>-lock``) and a small side file of locust_kv's own (``<path>-kvlock``).
Every operation is one LMDB transaction, so it is atomic with respect to every
greenlet, thread and process that opens the same path: LMDB lets one writer at
a time commit, across processes, and readers see a snapshot without waiting.

Layout. The main (unnamed) database holds the format version, the *state*,
the markers and the claims' fencing counter; six named databases hold the data
in two generations (0 and 1), and two more, ``locust_kv.claims`` and
``locust_kv.claim_ends``, the leases by key and by end (see
:mod:`~locust_kv.backends.disk_ops`; created on open when a store made before
claims lacks them):

* ``locust_kv.data.<g>``: key -> value, the user's entries.
* ``locust_kv.slots.<g>``: slot (8-byte big-endian) -> key, a dense array
  ``0..n-1`` of every key, so that ``random_key()`` is one lookup.
* ``locust_kv.slotof.<g>``: key -> slot, to swap-remove a deleted key.

The state, ``b"<g>:<index>:<restorer>"``, names the live generation, the
index status (``v`` valid, ``n`` none, ``b<pid>.<token>`` being rebuilt by
that process; older files may hold ``b<token>``) and the pid
of a process replacing the dataset (0 when none). Every transaction reads it
first (one lookup in a one-page database) and compares it with what this
process last saw, so a clear, restore or rebuild done by another process is
noticed at once. A restore fills the other generation in short transactions,
then flips the state in one short transaction.

Index costs. Only inserting a new key or deleting one touches the index (two
or three more B-tree updates in the same transaction); overwriting a key does
not. The index belongs to the store file: clearing, restoring or creating the
store with ``track_keys=True`` gives it an index, with ``track_keys=False``
none; while it has one, every writer maintains it, and ``rebuild_key_list()``
builds it. ``random_key()`` without a prefix reads two index entries with the
index (each a B-tree lookup, 3 or 4 pages deep at a million keys) and walks
every key without it; see :meth:`DiskBackend.random_key` for prefixes.

Fork. Nothing LMDB survives ``fork()``: the environment is opened lazily by
the first operation in each process. A fork hook (registered once) drops, in
the child, every reference to inherited transactions before closing the
inherited environment, so that the parent's reader slots stay untouched, and
the next operation opens the child's own environment.

Greenlets. No transaction ever spans a greenlet switch, except the read
transaction of a running backup (readers never block anyone). Long work
(rebuilding the index, filling a restore, sampling without an index) runs in
transactions of a few milliseconds with :func:`~locust_kv._cooperative.pause`
between them. ``clear()`` is one short transaction: LMDB frees a database's
pages by walking only its branch pages.

Growth. The map starts at ``map_size`` (8 MiB by default) and doubles when a
write needs more room, up to ``max_map_size`` and the free disk space. Every
byte of the map, and LMDB's lock file, is allocated on disk
(``posix_fallocate``) before it is mapped, so a write through the map never
needs a block the disk may not have: a full disk is DiskStoreFullError, never
SIGBUS. A growth step is cut to what the disk can allocate. Once the map
cannot grow any more, writes that add data may not fill its last
``_reserve_bytes()`` (1/64 of it, at least 1 MiB, at most 1/4), so that
deletes, ``clear()`` and the end of a restore always find pages; the side
file holds 1 MiB of disk that the map takes if the disk fills up between two
growths. Resizing runs under an exclusive lock on the side file, which also
records the size the processes agreed on: every process opens or adopts at
least that size, so no process ever maps, and with ``writemap`` truncates,
the file smaller than another one uses (the cause of the corruption in py-lmdb
issue 269).

Errors. Every :class:`lmdb.Error` is mapped by :data:`LMDB_ERRORS` and the
failing operation's family to a catalogued error, with the cause chained.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import secrets
import stat
import sys
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from itertools import islice
from random import random
from time import perf_counter
from typing import Any, ClassVar, Final, NamedTuple

import lmdb
from gevent.monkey import get_original

from .._cooperative import pause
from ..errors import (
    BackupInProgressError,
    BucketNotFoundError,
    DiskPathError,
    DiskStoreDeleteError,
    DiskStoreExistsError,
    DiskStoreFullError,
    DiskStoreIndexError,
    DiskStoreOpenError,
    DiskStoreReadError,
    DiskStoreScanError,
    DiskStoreSizeError,
    DiskStoreWriteError,
    InvalidOptionsError,
    KeyListRebuildError,
    KVError,
    RestoreInProgressError,
    StoreClosedError,
)
from . import disk_ops
from .base import Backend, BackupReader, ClaimRecord, Scope, apply_increment, prefix_end, reject_unknown
from .filesystems import check_local

__all__ = ["SCOPE", "DEFAULT_MAP_SIZE", "DEFAULT_PATH", "LMDB_ERRORS", "DiskBackend", "DiskSpec", "configure"]

SCOPE: Final[Scope] = "host"
"""Who shares a store of this backend (see ``backends.base.Scope``)."""

DEFAULT_PATH: Final = ".locust-kv.lmdb"
"""The store's file when ``open_kv`` gets no ``path``: in the working directory."""

DEFAULT_MAP_SIZE: Final = 8 << 20
"""The initial map: 8 MiB. Every byte of the map is allocated on disk, so it starts small and doubles."""

_MIN_MAP_SIZE: Final = 1 << 16
_DEFAULT_MAX_READERS: Final = 126

# ---------------------------------------------------------------------------
# The file layout.

_FORMAT_KEY: Final = b"locust_kv.format"
_FORMAT: Final = b"1"
_STATE_KEY: Final = b"locust_kv.state"
_MARKER_PREFIX: Final = b"locust_kv.marker."
_DB_NAMES: Final = tuple(
    (b"locust_kv.data.%d" % g, b"locust_kv.slots.%d" % g, b"locust_kv.slotof.%d" % g) for g in (0, 1)
)
_MAX_DBS: Final = 12  # 8 used: six of the generations, the leases and their ends

_VALID: Final = b"v"
_NONE: Final = b"n"
_BUILDING: Final = b"b"  # followed by the builder's pid, a dot and its token

_SLICE_SECONDS: Final = 0.004
"""How long one transaction of long work runs before it commits and pauses."""

_WALK_CHUNK: Final = 20_000
"""Keys read per transaction when sampling by walking the keys."""

_PROBE_KEYS: Final = 64
"""A prefix range this small is sampled by reading it whole."""

_REJECTION_TRIES: Final = 64
"""Random slots tried for a key with the prefix before walking the prefix range."""

_ATTEMPTS: Final = 8
"""Map adoptions or growths one operation may go through before it gives up."""

_RESTORE_ROWS: Final = 2_000
"""Entries written per restore transaction (a few milliseconds)."""

_WALK: Final = object()
"""Returned by a sampling probe when only walking the keys can answer."""

_PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")

_RESERVE_MIN: Final = 1 << 20
_MIN_CAP: Final = 1 << 20
"""The smallest ``max_map_size``: in a smaller map, the room kept for deletes (a quarter of it) is not
enough for LMDB to rebalance the key index as keys go, and deletes in a full store failed."""
"""The least reserve kept for deletes in a map that cannot grow (see ``DiskBackend._reserve_bytes``)."""

_SPARE_BYTES: Final = 1 << 20
"""Disk space the side file holds for the map to take when the disk fills up between two growths."""

_BACKUP_ROOM: Final = 64 << 20
"""The least map a backup starts with (see ``DiskBackend._make_room_for_backup``)."""

_NO_SPACE: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""``posix_fallocate`` errors that mean the disk (or the quota, or the file size limit) has no more room."""


class _NoRoom(Exception):
    """Inside ``DiskBackend._run``: the write would use the reserve of a map at its limit."""

# The real OS lock and sleep, even when gevent has patched them: they guard
# sections that never yield, against OS threads of this process.
_allocate_lock = get_original("_thread", "allocate_lock")
_allocate_rlock = get_original("_thread", "RLock")
_real_sleep = get_original("time", "sleep")

# Byte offsets of the locks in the side file (the first 8 bytes hold the agreed map size).
_RESIZE_LOCK: Final = 64
_BACKUP_LOCK: Final = 65
_RESTORE_LOCK: Final = 66
_REBUILD_LOCK: Final = 67  # shared: held by every process running a rebuild


class _State(NamedTuple):
    """The decoded state record."""

    generation: int
    index: bytes
    restorer: int

    @classmethod
    def decode(cls, raw: bytes | None) -> _State:
        if raw is None:
            raise BucketNotFoundError("the disk store's state record is missing (a foreign or damaged file)")
        try:
            generation, index, restorer = raw.split(b":")
            state = cls(int(generation), index, int(restorer))
        except ValueError:
            raise BucketNotFoundError("the disk store's state record is damaged") from None
        if state.generation not in (0, 1):
            raise BucketNotFoundError("the disk store's state record is damaged")
        return state

    def encode(self) -> bytes:
        return b"%d:%s:%d" % (self.generation, self.index, self.restorer)

    @property
    def maintained(self) -> bool:
        """Whether writers keep the index up to date (valid, or being built)."""
        return self.index == _VALID or self.index.startswith(_BUILDING)


# ---------------------------------------------------------------------------
# Errors: one table at the boundary.

_FAMILY: Final = None
"""In :data:`LMDB_ERRORS`: the failing operation's own error."""

LMDB_ERRORS: Final[dict[str, type[KVError] | None]] = {
    # Map full, and no growth left (the cap, or the disk); ENOSPC.
    "MapFullError": DiskStoreFullError,
    "DiskError": DiskStoreFullError,
    # A named database that is missing, or is not one: a foreign or damaged file.
    "NotFoundError": BucketNotFoundError,
    "IncompatibleError": BucketNotFoundError,
    "BadDbiError": BucketNotFoundError,
    # Everything else is the failing operation's error (DiskStoreOpenError while opening).
    "Error": _FAMILY,
    "KeyExistsError": _FAMILY,
    "PageNotFoundError": _FAMILY,
    "CorruptedError": _FAMILY,
    "PanicError": _FAMILY,
    "VersionMismatchError": _FAMILY,
    "InvalidError": _FAMILY,
    "DbsFullError": _FAMILY,
    "ReadersFullError": _FAMILY,
    "TlsFullError": _FAMILY,
    "TxnFullError": _FAMILY,
    "CursorFullError": _FAMILY,
    "PageFullError": _FAMILY,
    "MapResizedError": _FAMILY,
    "BadRslotError": _FAMILY,
    "BadTxnError": _FAMILY,
    "BadValsizeError": _FAMILY,
    "ReadonlyError": _FAMILY,
    "InvalidParameterError": _FAMILY,
    "LockError": _FAMILY,
    "MemoryError": _FAMILY,
    "ProblemError": _FAMILY,
    "BadChecksumError": _FAMILY,
    "CryptoFailError": _FAMILY,
    "EnvEncryptionError": _FAMILY,
}
"""Every :class:`lmdb.Error` class, by name, to the catalogued error it becomes.

Keyed by name so that the table also reads on py-lmdb versions that lack the
LMDB 1.0 classes; a test checks that every subclass of the installed version
is listed.
"""


class _Family(NamedTuple):
    error: type[KVError]
    what: str


_OPEN = _Family(DiskStoreOpenError, "could not open the disk store")
_READ = _Family(DiskStoreReadError, "disk store read failed")
_EXISTS = _Family(DiskStoreExistsError, "disk store exists check failed")
_WRITE = _Family(DiskStoreWriteError, "disk store write failed")
_DELETE = _Family(DiskStoreDeleteError, "disk store delete failed")
_SCAN = _Family(DiskStoreScanError, "disk store scan failed")
_SIZE = _Family(DiskStoreSizeError, "disk store size query failed")
_INDEX = _Family(DiskStoreIndexError, "disk store random key lookup failed")
_REBUILD = _Family(KeyListRebuildError, "key index rebuild failed")

_WRITE_OPERATIONS: Final = {
    "set": (_WRITE, "_set_in"),
    "delete": (_DELETE, "_delete_in"),
    "increment_by": (_WRITE, "_increment_in"),
    "get_or_set": (_WRITE, "_get_or_set_in"),
    "swap": (_WRITE, "_swap_in"),
    "compare_and_swap": (_WRITE, "_compare_and_swap_in"),
    "compare_and_delete": (_DELETE, "_compare_and_delete_in"),
}
"""The write operations with an inlined fast path: their error family and their step."""


def map_lmdb_error(exc: lmdb.Error, family: _Family) -> KVError:
    """The catalogued error for ``exc`` raised during an operation of ``family``.

    The text names the LMDB error and its reason, never the key.
    """
    target: type[KVError] | None = _FAMILY
    for cls in type(exc).__mro__:
        if cls.__name__ in LMDB_ERRORS and issubclass(cls, lmdb.Error):
            target = LMDB_ERRORS[cls.__name__]
            break
    error_class = family.error if target is None else target
    return error_class(f"{family.what}: {type(exc).__name__}: {exc}")


def _os_error(exc: OSError) -> str:
    return exc.strerror or str(exc)


# ---------------------------------------------------------------------------
# The side file: cross-process locks and the agreed map size.


class _SideFile:
    """``<path>-kvlock``, shared by the processes of one store.

    Its first 8 bytes hold the map size the processes agreed on; byte-range
    POSIX locks on it serialise resizes and mark a running backup or restore.
    POSIX locks belong to the process, are released when it dies, and are not
    inherited by a forked child, so each process keeps one descriptor per
    store for its lifetime (closing any descriptor of the file would drop all
    of the process's locks on it). The flags say what this process runs.
    """

    _open: ClassVar[dict[str, _SideFile]] = {}

    def __init__(self, store_path: str, fd: int) -> None:
        self.store_path = store_path
        self.fd = fd
        self.users = 0
        self.backup_owner: object | None = None
        self.restoring = False
        self.rebuilding = 0  # rebuilds running in this process (greenlets or threads)
        # Threads of this process resize one at a time: POSIX locks do not exclude them.
        self.guard = _allocate_lock()

    def after_fork_in_child(self) -> None:
        """The child holds none of the parent's locks, and runs none of its backups or restores."""
        self.backup_owner = None
        self.restoring = False
        self.rebuilding = 0
        self.guard = _allocate_lock()

    @classmethod
    def acquire(cls, store_path: str) -> _SideFile:
        side = cls._open.get(store_path)
        if side is None:
            path = store_path + "-kvlock"
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise DiskStoreOpenError(f"could not open the disk store's lock file {path}: {_os_error(exc)}") from exc
            side = cls._open[store_path] = cls(store_path, fd)
        side.users += 1
        return side

    def release(self) -> None:
        self.users -= 1
        self.close_if_unused()

    def close_if_unused(self) -> None:
        """Close the descriptor once no backend uses it and no backup or restore holds a lock on it."""
        if self.users > 0 or self.backup_owner is not None or self.restoring or self.rebuilding:
            return
        if _SideFile._open.get(self.store_path) is self:
            del _SideFile._open[self.store_path]
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
                fcntl.lockf(self.fd, fcntl.LOCK_SH, 1, _REBUILD_LOCK)
            self.rebuilding += 1

    def end_rebuild(self) -> None:
        with self.guard:
            self.rebuilding -= 1
            if self.rebuilding == 0:
                self.unlock(_REBUILD_LOCK)
        self.close_if_unused()

    def rebuild_running(self) -> bool:
        """Whether any process (this one included) runs a rebuild of the store."""
        return self.rebuilding > 0 or self.held_elsewhere(_REBUILD_LOCK)

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

        The file is extended to ``_SPARE_BYTES``; the map takes those blocks
        (:meth:`release_reserve`) when it must grow and the disk is full, so
        that a map that filled up between two growths still has room for
        deletes. Otherwise at least the first block (the agreed size) is
        backed, so that recording a size never fails for lack of space; if
        not even that can be, DiskStoreFullError. Holds the resize lock.
        """
        try:
            os.posix_fallocate(self.fd, 0, _SPARE_BYTES)
            return
        except OSError as exc:
            if exc.errno not in _NO_SPACE:
                return  # a filesystem that cannot allocate ahead
        try:
            os.posix_fallocate(self.fd, 0, 8)
        except OSError as exc:
            if exc.errno in _NO_SPACE:
                raise DiskStoreFullError(
                    f"the disk store is full: the disk cannot allocate its lock file ({_os_error(exc)})"
                ) from exc

    def release_reserve(self) -> bool:
        """Free the reserve's blocks for the map to take; whether there were any. Holds the resize lock."""
        if os.fstat(self.fd).st_size <= _PAGE_SIZE:
            return False
        os.ftruncate(self.fd, _PAGE_SIZE)  # POSIX locks do not depend on the file's size
        return True

    def agreed_size(self) -> int:
        return int.from_bytes(os.pread(self.fd, 8, 0).ljust(8, b"\0"), "big")

    def agree(self, size: int) -> None:
        os.pwrite(self.fd, size.to_bytes(8, "big"), 0)


# ---------------------------------------------------------------------------
# Fork safety.

_live: weakref.WeakSet[DiskBackend] = weakref.WeakSet()
_fork_hook_registered = False


def _track(backend: DiskBackend) -> None:
    global _fork_hook_registered
    if not _fork_hook_registered:
        os.register_at_fork(after_in_child=_forget_inherited_environments)
        _fork_hook_registered = True
    _live.add(backend)


def _forget_inherited_environments() -> None:
    """In a forked child: stop using every environment and lock the parent owns."""
    for side in list(_SideFile._open.values()):
        side.after_fork_in_child()
    for backend in list(_live):
        backend._forget_inherited()


# ---------------------------------------------------------------------------
# The backend.

_NO_STATE: Final = object()
"""Never equal to a state record: forces the slow path until a view is adopted."""


class _View:
    """What one state record means for an operation: which databases, which index work.

    Immutable, and swapped as a whole, so that a thread never pairs one
    state with another state's databases.
    """

    __slots__ = ("claims", "data", "ends", "fillable", "indexed", "maintain", "raw", "slotof", "slots", "state", "writable")

    def __init__(
        self,
        raw: Any,
        state: _State | None,
        dbs: tuple[tuple[Any, Any, Any], ...],
        at_limit: bool = False,
        claims: tuple[Any, Any] = (None, None),
    ) -> None:
        self.raw = raw
        self.state = state
        self.claims, self.ends = claims
        if state is None:
            self.writable: Any = _NO_STATE
            self.fillable: Any = _NO_STATE
            self.data = self.slots = self.slotof = None
            self.maintain = self.indexed = False
            return
        # Writes go ahead while the store has this state, unless it names a restorer.
        self.writable = raw if state.restorer == 0 else _NO_STATE
        # Writes that add data take the fast path too, unless the map is at its limit:
        # then they go through DiskBackend._run, which keeps the reserve for deletes.
        self.fillable = _NO_STATE if at_limit else self.writable
        self.data, self.slots, self.slotof = dbs[state.generation]
        self.maintain = state.maintained
        self.indexed = state.index == _VALID


_CLOSED_VIEW: Final = _View(_NO_STATE, None, ())


class DiskBackend(Backend):
    """A store in an LMDB file, shared by every process that opens its path. See the module docstring."""

    kind = "disk"
    scope = SCOPE

    def __init__(self, spec: DiskSpec) -> None:
        self.location = spec.path
        self._spec = spec
        self._track_keys = spec.track_keys
        self._closed = False
        self._env: lmdb.Environment | None = None
        self._begin: Callable[..., lmdb.Transaction] = self._lazy_begin
        self._open_lock = _allocate_lock()
        self._op_lock = _allocate_rlock()
        self._threads = False
        self._map_size = 0
        self._at_limit = False  # the map cannot grow any more: writes that add data keep the reserve free
        self._resizes = 0
        self._dbs: tuple[tuple[Any, Any, Any], ...] = ()
        self._claims: tuple[Any, Any] = (None, None)  # the leases' databases (by key, by end), shared by both generations
        self._all_dbs: tuple[Any, ...] = ()  # the main database, the six of the generations and the leases'
        self._view = _CLOSED_VIEW
        self._backup_reader: _DiskBackupReader | None = None
        self._side = _SideFile.acquire(spec.path)
        try:
            # Fail at open_kv, not at first use, on a store that cannot be opened.
            self._open_env()
            self._close_env()
        except BaseException:
            self._side.release()
            raise
        _track(self)

    # -- the environment ----------------------------------------------------

    def _lazy_begin(self, *args: Any) -> lmdb.Transaction:
        with self._open_lock:
            env = self._env
            if env is None:
                env = self._open_env()
        return env.begin(*args)

    def _open_env(self) -> lmdb.Environment:
        if self._closed:
            raise StoreClosedError("the store handle is closed")
        spec = self._spec
        side = self._side
        try:
            with side.guard, side.exclusive(_RESIZE_LOCK):
                agreed = side.agreed_size()
                floor = max(agreed, self._file_size(), _MIN_MAP_SIZE)
                wanted = max(spec.map_size, floor)
                _reserve_lock_file(spec.path, spec.max_readers)
                side.reserve()
                # LMDB initialises an empty file, or checks that an existing one is LMDB's, and maps
                # it without writing to the map; only then is the file extended and backed.
                env = self._lmdb_open(floor)
                try:
                    try:
                        size = self._reserve_space(wanted, floor)
                    except DiskStoreFullError:
                        if spec.writemap:
                            raise  # mapping blocks the disk cannot back would be a SIGBUS later
                        size = floor  # pwrite reports a full disk; growth allocates first
                    if size != floor:
                        env.set_mapsize(size)
                    actual = env.info()["map_size"]
                    if actual > size:  # LMDB maps at least the pages in use
                        size = self._reserve_space(actual, actual)
                    if actual > agreed:
                        side.agree(actual)
                except BaseException:
                    env.close()
                    raise
        except lmdb.Error as exc:
            raise map_lmdb_error(exc, _OPEN) from exc
        except OSError as exc:
            if exc.errno in _NO_SPACE:
                raise DiskStoreFullError(f"the disk store is full: could not open it: {_os_error(exc)}") from exc
            raise DiskStoreOpenError(f"could not open the disk store {spec.path}: {_os_error(exc)}") from exc
        self._env = env
        self._map_size = env.info()["map_size"]
        try:
            self._at_limit = self._at_final_size(size < wanted)
            env.reader_check()  # reclaim the reader slots of killed processes
            for attempt in range(_ATTEMPTS):
                resizes = self._resizes
                try:
                    self._dbs, self._claims, state = self._open_databases(env)
                    self._all_dbs = (env.open_db(None), *(db for dbs in self._dbs for db in dbs), *self._claims)
                    break
                except lmdb.Error as exc:  # another process grew the map meanwhile, or it is full
                    self._recover(_OPEN, exc, attempt, resizes)
            else:
                raise DiskStoreOpenError("could not open the disk store: the map was resized too many times in a row")
        except BaseException:
            self._env = None
            env.close()
            raise
        self._begin = env.begin
        self._adopt(state)
        return env

    def _open_databases(self, env: lmdb.Environment) -> tuple[tuple[tuple[Any, Any, Any], ...], Any, bytes]:
        """Create or check the layout, in one write transaction; the handles (generations, leases) and the state.

        The leases' database is created when missing: stores made before
        claims existed open as they are, with no leases.
        """
        with env.begin(write=True) as txn:
            fmt = txn.get(_FORMAT_KEY)
            if fmt is None:
                if txn.cursor().first():
                    raise BucketNotFoundError(
                        f"{self._spec.path} is an LMDB file but not a locust_kv store (its databases are missing)"
                    )
                dbs = tuple(tuple(env.open_db(name, txn=txn) for name in names) for names in _DB_NAMES)
                txn.put(_FORMAT_KEY, _FORMAT)
                txn.put(_STATE_KEY, _State(0, _VALID if self._track_keys else _NONE, 0).encode())
            elif fmt != _FORMAT:
                raise DiskStoreOpenError(f"disk store format {fmt!r} is not supported (this version reads {_FORMAT!r})")
            else:
                dbs = tuple(tuple(env.open_db(name, txn=txn, create=False) for name in names) for names in _DB_NAMES)
            claims = (env.open_db(disk_ops.CLAIMS_DB, txn=txn), env.open_db(disk_ops.ENDS_DB, txn=txn))
            state = txn.get(_STATE_KEY)
            _State.decode(state)
        return dbs, claims, state  # type: ignore[return-value]

    def _close_env(self) -> None:
        env, self._env = self._env, None
        self._begin = self._lazy_begin
        self._view = _CLOSED_VIEW
        self._dbs = ()
        self._claims = (None, None)
        if env is not None:
            env.close()

    def _lmdb_open(self, size: int) -> lmdb.Environment:
        spec = self._spec
        return lmdb.open(
            spec.path,
            map_size=size,
            subdir=False,
            max_dbs=_MAX_DBS,
            max_readers=spec.max_readers,
            writemap=spec.writemap,
            sync=spec.durable,
            metasync=spec.durable,
            max_spare_txns=0,
        )

    def _file_size(self) -> int:
        try:
            return os.stat(self._spec.path).st_size if self._spec.writemap else 0
        except FileNotFoundError:
            return 0

    def _forget_inherited(self) -> None:
        """After fork, in the child: drop the parent's environment without touching its reader slots.

        py-lmdb does not abort a transaction that a forked child merely
        dereferences, but ``env.close()`` aborts every transaction still
        alive, and aborting a read transaction frees its reader slot in the
        shared lock file: the parent's slot. So the only transaction that may
        be alive here, a backup's, is dereferenced first.
        """
        self._open_lock = _allocate_lock()
        reader, self._backup_reader = self._backup_reader, None
        if reader is not None:
            reader._detach()
        self._close_env()

    # -- state ------------------------------------------------------------------

    def _adopt(self, raw: bytes | None) -> _View:
        """The view of the state record ``raw``, which becomes the one the fast paths compare with."""
        view = self._view = _View(raw, _State.decode(raw), self._dbs, self._at_limit, self._claims)
        return view

    def _set_at_limit(self, at_limit: bool) -> None:
        """Record whether the map reached its final size; the fast paths of writes that add data follow."""
        self._at_limit = at_limit
        view = self._view
        if view.state is not None:
            self._view = _View(view.raw, view.state, self._dbs, at_limit, self._claims)

    def _check_writable(self, txn: lmdb.Transaction, raw: bytes | None) -> _View:
        """In a write transaction whose state changed: adopt it, or refuse during a restore."""
        view = self._adopt(raw)
        state = view.state
        assert state is not None
        if state.restorer == 0:
            return view
        if self._side.restoring or self._side.held_elsewhere(_RESTORE_LOCK):
            raise RestoreInProgressError("a restore is in progress; retry when it completes")
        # The restoring process died (its lock is free): drop its half-filled generation.
        self._drop_generation(txn, 1 - state.generation)
        return self._put_state(txn, state._replace(restorer=0))

    def _put_state(self, txn: lmdb.Transaction, state: _State) -> _View:
        raw = state.encode()
        txn.put(_STATE_KEY, raw)
        return self._adopt(raw)

    def _drop_generation(self, txn: lmdb.Transaction, generation: int) -> None:
        # Frees the pages by walking branch pages only: milliseconds for a million keys.
        for db in self._dbs[generation]:
            txn.drop(db, delete=False)

    def _set_index_status(self, txn: lmdb.Transaction, index: bytes) -> _View:
        return self._put_state(txn, _State.decode(txn.get(_STATE_KEY))._replace(index=index))

    # -- transactions --------------------------------------------------------------

    def _read(self, family: _Family, op: Callable[..., Any], *args: Any) -> Any:
        """``op(txn, view, *args)`` in a read transaction, following map growth and state changes."""
        return self._run(family, False, False, op, args)

    def _write(self, family: _Family, op: Callable[..., Any], *args: Any) -> Any:
        """``op(txn, view, *args)`` in a write transaction, committed; refused during a restore; grows the map.

        Operations of the delete family may use the map's reserve; the others
        add data and may not (see :meth:`_run`).
        """
        return self._run(family, True, True, op, args, family is not _DELETE)

    def _write_unchecked(self, family: _Family, op: Callable[..., Any], *args: Any) -> Any:
        """As :meth:`_write`, for the steps of a restore or rebuild, which check the state themselves; they add data."""
        return self._run(family, True, False, op, args, True)

    def _write_freeing(self, family: _Family, op: Callable[..., Any], *args: Any) -> Any:
        """As :meth:`_write_unchecked`, for steps that free data (ending a restore): they may use the reserve."""
        return self._run(family, True, False, op, args, False)

    def _run(
        self, family: _Family, write: bool, checked: bool, op: Callable[..., Any], args: tuple[Any, ...], adds: bool = False
    ) -> Any:
        """Run ``op`` in one transaction, retrying after map growth or adoption.

        When the map is at its final size (``_at_limit``), a write that
        ``adds`` data is refused with DiskStoreFullError if, after it, the
        pages in use would exceed the map less its reserve (and it grew
        them): the reserve stays free for deletes, clear and the end of a
        restore, which never need to grow the map to succeed.
        """
        for attempt in range(_ATTEMPTS):
            resizes = self._resizes
            guard = write and adds and self._at_limit
            lock = self._op_lock if self._threads else None
            if lock is not None:
                lock.acquire()
            try:
                try:
                    txn = self._begin(None, None, True) if write else self._begin()
                except lmdb.Error as exc:
                    failure = exc
                else:
                    try:
                        raw = txn.get(_STATE_KEY)
                        view = self._view
                        if checked:
                            if raw != view.writable:
                                view = self._check_writable(txn, raw)
                        elif raw != view.raw:
                            view = self._adopt(raw)
                        before = self._pages_in_use(txn) if guard else 0
                        result = op(txn, view, *args)
                        if guard:
                            after = self._pages_in_use(txn)
                            if after > before and after > self._fill_limit_pages():
                                raise _NoRoom
                        if write:
                            txn.commit()
                        return result
                    except lmdb.Error as exc:
                        failure = exc
                    except _NoRoom:
                        failure = None
                    finally:
                        txn.abort()  # after a commit: does nothing
            finally:
                if lock is not None:
                    lock.release()
            if failure is None:
                self._grow_into_reserve(family, resizes)
            else:
                self._recover(family, failure, attempt, resizes)
        raise family.error(f"{family.what}: the map was resized too many times in a row")

    def _pages_in_use(self, txn: lmdb.Transaction) -> int:
        """Pages of every database of the store as this transaction sees them (free pages excluded)."""
        used = 0
        for db in self._all_dbs:
            stat = txn.stat(db)
            used += stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
        return used

    def _reserve_bytes(self) -> int:
        """The end of the map kept for deletes once it cannot grow: 1/64 of it, at least 1 MiB, at most 1/4."""
        size = self._map_size
        return min(max(_RESERVE_MIN, size // 64), size // 4)

    def _fill_limit_pages(self) -> int:
        """How many pages writes that add data may fill when the map is at its limit."""
        return (self._map_size - self._reserve_bytes()) // _PAGE_SIZE

    def _grow_into_reserve(self, family: _Family, resizes: int) -> None:
        """A write that adds data would use the reserve: grow the map (the disk may have room again) or refuse.

        Raises DiskStoreFullError when the map cannot grow; nothing was written.
        """
        try:
            self._resize(family, True, resizes)
        except DiskStoreFullError as full:
            why = full.message.removeprefix("the disk store is full: ")
            raise DiskStoreFullError(
                f"the disk store is full: the map cannot grow and its last {self._reserve_bytes()} bytes "
                f"are kept for deletes ({why})"
            ) from full

    def _recover(self, family: _Family, exc: lmdb.Error, attempt: int, resizes: int) -> None:
        """Make the next attempt possible after ``exc``, or raise its catalogued error."""
        if isinstance(exc, lmdb.MapFullError) and self._reclaim_stale_readers():
            return  # a killed process's reader pinned freed pages: they are free now, retry before growing
        if isinstance(exc, lmdb.MapResizedError):
            self._resize(family, False, resizes)
        elif isinstance(exc, lmdb.MapFullError):
            try:
                self._resize(family, True, resizes)
            except DiskStoreFullError as full:
                if full.__cause__ is None:
                    raise full from exc
                raise
        elif isinstance(exc, lmdb.ReadersFullError) and attempt == 0 and self._env is not None:
            self._env.reader_check()
        elif self._resizes == resizes:  # else another thread's resize ended the transaction: retry
            if self._failed_for_space(exc):
                raise DiskStoreFullError(f"{family.what}: the disk is full ({type(exc).__name__}: {exc})") from exc
            raise map_lmdb_error(exc, family) from exc

    def _reclaim_stale_readers(self) -> int:
        """Free the reader slots of dead processes (``env.reader_check()``); how many were freed.

        A process killed inside a read transaction (a backup, typically)
        keeps its slot, and LMDB reuses no page freed after that reader's
        snapshot: every write then takes new pages and the file grows until
        the map is full. Called where that matters and costs nothing
        measurable: before a write grows the map (at ``MapFullError``: the
        pages are reusable at once, so the retry may fit without growing),
        and at the start of a backup, restore, clear or rebuild (each writes
        or pins many pages). Not per operation: it scans the whole reader
        table and asks the kernel about each pid's lock. Opening the
        environment does it too.
        """
        env = self._env
        if env is None:
            return 0
        try:
            return env.reader_check()  # type: ignore[no-any-return]
        except lmdb.Error:
            return 0  # the operation's own error, if any, follows

    def _disk_short_of_reserve(self) -> bool:
        """Whether the store's filesystem has less free space than the map's reserve (False if it cannot tell)."""
        try:
            vfs = os.statvfs(os.path.dirname(self._spec.path))
        except OSError:
            return False
        return vfs.f_bavail * vfs.f_frsize < self._reserve_bytes()

    def _failed_for_space(self, exc: lmdb.Error) -> bool:
        """Whether ``exc`` is an I/O error of a disk that is full.

        LMDB reports a short ``pwrite`` at commit (``writemap=False``) as EIO,
        whatever its cause; when the store's filesystem has less free space
        than the map's reserve, the cause was the lack of space.
        """
        if type(exc) is not lmdb.Error or os.strerror(errno.EIO) not in str(exc):
            return False
        return self._disk_short_of_reserve()

    # -- OS threads ----------------------------------------------------------------------

    def _enter_thread_mode(self) -> None:
        """From now on every transaction of this backend holds ``_op_lock``, so resizes can exclude them.

        ``set_mapsize`` must not run while another OS thread of the process is
        inside a transaction (py-lmdb then fails those with EINVAL, or hangs).
        Greenlets share one thread and never need this. It starts at the
        first resize that finds other threads in the process: the inlined
        fast paths, which take no lock, give way to their locked forms.
        """
        self._threads = True
        self.get = functools.partial(self._read, _READ, self._get_in)  # type: ignore[method-assign]
        self.exists = lambda key: self._read(_EXISTS, self._get_in, key) is not None  # type: ignore[method-assign]
        self.random_key = self._random_key_slow  # type: ignore[method-assign]
        self.size = functools.partial(self._read, _SIZE, self._size_in)  # type: ignore[method-assign]
        for name, (family, step) in _WRITE_OPERATIONS.items():
            setattr(self, name, functools.partial(self._write, family, getattr(self, step)))

    # -- growth --------------------------------------------------------------------------

    def _resize(self, family: _Family, grow: bool, resizes: int, at_least: int = 0) -> None:
        """Adopt the size another process grew the map to, or grow it (doubling, or to ``at_least``).

        No transaction of this greenlet is open. ``set_mapsize`` ends every
        transaction of the process, so a running backup stops with an error.
        """
        side = self._side
        with side.guard:
            env = self._env
            if env is None or self._resizes != resizes:
                return  # closed, or another thread resized since the attempt began: retry
            if not self._threads and len(sys._current_frames()) > 1:
                self._enter_thread_mode()
                _quiesce(env)
            lock = self._op_lock if self._threads else nullcontext()
            try:
                with lock, side.exclusive(_RESIZE_LOCK):
                    agreed = side.agreed_size()
                    target = max(agreed, self._file_size())
                    clamped = False
                    if target > self._map_size:
                        # Another process grew the map; its blocks are allocated unless it ran an
                        # older version (then this fills the holes, or refuses rather than SIGBUS).
                        self._reserve_space(target, target if self._spec.writemap else self._map_size)
                    elif grow:
                        try:
                            wanted, clamped = self._next_map_size(at_least)
                            # A growth asked for ahead of need is all or nothing.
                            target = self._reserve_space(wanted, wanted if at_least else self._map_size + _PAGE_SIZE)
                            clamped = clamped or target < wanted
                        except DiskStoreFullError:
                            if at_least:
                                raise
                            # The disk filled up since the last growth: take the reserve the side
                            # file holds, so that the full map still has room for deletes.
                            cap = self._spec.max_map_size
                            if (cap is not None and self._map_size >= cap) or not side.release_reserve():
                                self._set_at_limit(True)
                                raise
                            target = self._reserve_space(self._map_size + _SPARE_BYTES, self._map_size + _PAGE_SIZE)
                            if cap is not None:
                                target = min(target, cap)
                            clamped = True
                    elif self._spec.writemap:
                        target = self._map_size
                    else:
                        target = 0  # the size LMDB's meta page records, or the data's if larger
                    self._interrupt_backup()
                    _set_mapsize(env, target)
                    self._map_size = env.info()["map_size"]
                    self._resizes += 1
                    if self._map_size > agreed:
                        side.agree(self._map_size)
                    self._set_at_limit(self._at_final_size(clamped))
                    if not self._at_limit:
                        side.reserve()  # the disk has room again: hold the reserve again
            except lmdb.Error as exc:
                # A failed remap leaves the environment unusable: the next operation reopens it.
                self._discard_env()
                if isinstance(exc, lmdb.MemoryError):
                    raise DiskStoreFullError(f"the disk store's map cannot grow: {exc}") from exc
                raise map_lmdb_error(exc, family) from exc
            except OSError as exc:
                raise family.error(f"{family.what}: resizing the map failed: {_os_error(exc)}") from exc

    def _next_map_size(self, at_least: int = 0) -> tuple[int, bool]:
        """Double the map (or make it ``at_least``), within ``max_map_size`` and the disk's free space.

        Raises DiskStoreFullError if it cannot grow.

        Also says whether a limit cut the step short (then the map reaches its final size).
        """
        spec = self._spec
        current = self._map_size
        target = at_least or current * 2
        limit = "its size"
        if spec.max_map_size is not None and target > spec.max_map_size:
            target, limit = spec.max_map_size, f"max_map_size={spec.max_map_size}"
        stat = os.statvfs(os.path.dirname(spec.path))
        room = os.stat(spec.path).st_blocks * 512 + stat.f_bavail * stat.f_frsize
        if target > room:
            target, limit = room, f"the free disk space ({stat.f_bavail * stat.f_frsize} bytes)"
        target -= target % _PAGE_SIZE
        if target <= current:
            raise DiskStoreFullError(f"the disk store is full: its map of {current} bytes cannot grow beyond {limit}")
        return target, target < (at_least or current * 2)

    def _reserve_space(self, wanted: int, needed: int) -> int:
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
        wanted = -(-wanted // _PAGE_SIZE) * _PAGE_SIZE
        needed = min(-(-needed // _PAGE_SIZE) * _PAGE_SIZE, wanted)
        path = self._spec.path
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
                    if exc.errno not in _NO_SPACE:
                        return wanted
                    if size <= needed:
                        raise DiskStoreFullError(
                            f"the disk store is full: the disk cannot allocate the {needed} bytes its map needs "
                            f"({_os_error(exc)})"
                        ) from exc
                    # Try what the free space says fits, else a smaller step, never below what is needed.
                    vfs = os.fstatvfs(fd)
                    room = os.fstat(fd).st_blocks * 512 + vfs.f_bavail * vfs.f_frsize
                    step = max(_PAGE_SIZE, (size - needed) // 4)
                    size = max(needed, min(room, size - step) // _PAGE_SIZE * _PAGE_SIZE)
        finally:
            os.close(fd)

    def _at_final_size(self, clamped: bool) -> bool:
        """Whether the map just reached its last size: ``max_map_size``, or the disk's room (``clamped``, or less
        free space than the reserve). Growth retried when a write is refused corrects a wrong guess."""
        cap = self._spec.max_map_size
        if clamped or (cap is not None and self._map_size >= cap):
            return True
        return self._disk_short_of_reserve()

    def _discard_env(self) -> None:
        self._interrupt_backup()
        try:
            self._close_env()
        except lmdb.Error:
            self._env = None
            self._begin = self._lazy_begin
            self._view = _CLOSED_VIEW

    def _interrupt_backup(self) -> None:
        if self._backup_reader is not None:
            self._backup_reader._interrupt()

    # -- single-key operations ------------------------------------------------------------
    # Each inlines the common case: one transaction, and the state is the one
    # this process last saw. Anything else (first use, another state, a full
    # or resized map, a refused write) goes through _read or _write, which run
    # the same step function again from the start. Calling those directly
    # costs about 350 ns more per operation.

    def get(self, key: bytes) -> bytes | None:
        try:
            txn = self._begin()
            try:
                view = self._view
                if txn.get(_STATE_KEY) == view.raw:
                    return txn.get(key, None, view.data)  # type: ignore[no-any-return]
            finally:
                txn.abort()
        except lmdb.Error:
            pass
        return self._read(_READ, self._get_in, key)  # type: ignore[no-any-return]

    def _get_in(self, txn: lmdb.Transaction, view: _View, key: bytes) -> bytes | None:
        return txn.get(key, None, view.data)  # type: ignore[no-any-return]

    def exists(self, key: bytes) -> bool:
        try:
            txn = self._begin()
            try:
                view = self._view
                if txn.get(_STATE_KEY) == view.raw:
                    return txn.get(key, None, view.data) is not None
            finally:
                txn.abort()
        except lmdb.Error:
            pass
        return self._read(_EXISTS, self._get_in, key) is not None

    def set(self, key: bytes, value: bytes) -> None:
        try:
            txn = self._begin(None, None, True)
        except lmdb.Error:
            txn = None
        if txn is not None:
            try:
                view = self._view
                if txn.get(_STATE_KEY) == view.fillable:
                    self._set_in(txn, view, key, value)
                    txn.commit()
                    return
            except lmdb.Error:
                pass
            finally:
                txn.abort()  # after a commit: does nothing
        self._write(_WRITE, self._set_in, key, value)

    def _set_in(self, txn: lmdb.Transaction, view: _View, key: bytes, value: bytes) -> None:
        if view.maintain:
            if txn.replace(key, value, view.data) is None:
                self._index_add(txn, view, key)
        else:
            txn.put(key, value, True, True, False, view.data)

    def delete(self, key: bytes) -> bool:
        try:
            txn = self._begin(None, None, True)
        except lmdb.Error:
            txn = None
        if txn is not None:
            try:
                view = self._view
                if txn.get(_STATE_KEY) == view.writable:
                    result = self._delete_in(txn, view, key)
                    txn.commit()
                    return result
            except lmdb.Error:
                pass
            finally:
                txn.abort()  # after a commit: does nothing
        return self._write(_DELETE, self._delete_in, key)  # type: ignore[no-any-return]

    def _delete_in(self, txn: lmdb.Transaction, view: _View, key: bytes) -> bool:
        if not txn.delete(key, b"", view.data):
            return False
        if view.maintain:
            self._index_remove(txn, view, key)
        # Its lease goes with it. On an empty leases' database this costs a lookup of
        # its root in the one-page main database (lost in the commit's noise).
        lease = txn.pop(key, view.claims)
        if lease is not None:
            txn.delete(disk_ops.end_key(lease), b"", view.ends)
        return True

    def increment_by(self, key: bytes, delta: int) -> int:
        try:
            txn = self._begin(None, None, True)
        except lmdb.Error:
            txn = None
        if txn is not None:
            try:
                view = self._view
                if txn.get(_STATE_KEY) == view.fillable:
                    result = self._increment_in(txn, view, key, delta)
                    txn.commit()
                    return result
            except lmdb.Error:
                pass
            finally:
                txn.abort()  # after a commit: does nothing
        return self._write(_WRITE, self._increment_in, key, delta)  # type: ignore[no-any-return]

    def _increment_in(self, txn: lmdb.Transaction, view: _View, key: bytes, delta: int) -> int:
        data = view.data
        current = txn.get(key, None, data)
        value, encoded = apply_increment(current, delta)
        txn.put(key, encoded, True, True, False, data)
        if current is None and view.maintain:
            self._index_add(txn, view, key)
        return value

    def get_or_set(self, key: bytes, value: bytes) -> tuple[bytes, bool]:
        try:
            txn = self._begin(None, None, True)
        except lmdb.Error:
            txn = None
        if txn is not None:
            try:
                view = self._view
                if txn.get(_STATE_KEY) == view.fillable:
                    result = self._get_or_set_in(txn, view, key, value)
                    txn.commit()
                    return result
            except lmdb.Error:
                pass
            finally:
                txn.abort()  # after a commit: does nothing
        return self._write(_WRITE, self._get_or_set_in, key, value)  # type: ignore[no-any-return]

    def _get_or_set_in(self, txn: lmdb.Transaction, view: _View, key: bytes, value: bytes) -> tuple[bytes, bool]:
        data = view.data
        current = txn.get(key, None, data)
        if current is not None:
            return current, True
        txn.put(key, value, True, True, False, data)
        if view.maintain:
            self._index_add(txn, view, key)
        return value, False

    def swap(self, key: bytes, value: bytes) -> bytes | None:
        try:
            txn = self._begin(None, None, True)
        except lmdb.Error:
            txn = None
        if txn is not None:
            try:
                view = self._view
                if txn.get(_STATE_KEY) == view.fillable:
                    result = self._swap_in(txn, view, key, value)
                    txn.commit()
                    return result
            except lmdb.Error:
                pass
            finally:
                txn.abort()  # after a commit: does nothing
        return self._write(_WRITE, self._swap_in, key, value)  # type: ignore[no-any-return]

    def _swap_in(self, txn: lmdb.Transaction, view: _View, key: bytes, value: bytes) -> bytes | None:
        previous = txn.replace(key, value, view.data)
        if previous is None and view.maintain:
            self._index_add(txn, view, key)
        return previous  # type: ignore[no-any-return]

    def compare_and_swap(self, key: bytes, old: bytes | None, new: bytes) -> bool:
        try:
            txn = self._begin(None, None, True)
        except lmdb.Error:
            txn = None
        if txn is not None:
            try:
                view = self._view
                if txn.get(_STATE_KEY) == view.fillable:
                    result = self._compare_and_swap_in(txn, view, key, old, new)
                    txn.commit()
                    return result
            except lmdb.Error:
                pass
            finally:
                txn.abort()  # after a commit: does nothing
        return self._write(_WRITE, self._compare_and_swap_in, key, old, new)  # type: ignore[no-any-return]

    def _compare_and_swap_in(self, txn: lmdb.Transaction, view: _View, key: bytes, old: bytes | None, new: bytes) -> bool:
        data = view.data
        current = txn.get(key, None, data)
        if current != old:
            return False
        txn.put(key, new, True, True, False, data)
        if current is None and view.maintain:
            self._index_add(txn, view, key)
        return True

    def compare_and_delete(self, key: bytes, old: bytes) -> bool:
        try:
            txn = self._begin(None, None, True)
        except lmdb.Error:
            txn = None
        if txn is not None:
            try:
                view = self._view
                if txn.get(_STATE_KEY) == view.writable:
                    result = self._compare_and_delete_in(txn, view, key, old)
                    txn.commit()
                    return result
            except lmdb.Error:
                pass
            finally:
                txn.abort()  # after a commit: does nothing
        return self._write(_DELETE, self._compare_and_delete_in, key, old)  # type: ignore[no-any-return]

    def _compare_and_delete_in(self, txn: lmdb.Transaction, view: _View, key: bytes, old: bytes) -> bool:
        data = view.data
        if txn.get(key, None, data) != old:
            return False
        txn.delete(key, b"", data)
        if view.maintain:
            self._index_remove(txn, view, key)
        lease = txn.pop(key, view.claims)
        if lease is not None:
            txn.delete(disk_ops.end_key(lease), b"", view.ends)
        return True

    # -- the key index ----------------------------------------------------------------------

    def _index_add(self, txn: lmdb.Transaction, view: _View, key: bytes) -> None:
        """Give the new ``key`` the next slot (append to the dense array)."""
        slots = txn.cursor(view.slots)
        count = int.from_bytes(slots.key(), "big") + 1 if slots.last() else 0
        slot = count.to_bytes(8, "big")
        if not txn.put(key, slot, True, False, False, view.slotof):
            # Already indexed: only a damaged index can say so. Stop trusting it.
            self._set_index_status(txn, _NONE)
            return
        slots.put(slot, key, False, True, True)

    def _index_remove(self, txn: lmdb.Transaction, view: _View, key: bytes) -> None:
        """Free ``key``'s slot by moving the last key into it (swap-remove)."""
        slot = txn.pop(key, view.slotof)
        if slot is None:
            if view.indexed:  # an unindexed key is normal only while the index is being built
                self._set_index_status(txn, _NONE)
            return
        slots = txn.cursor(view.slots)
        if not slots.last():
            self._set_index_status(txn, _NONE)
            return
        if slots.key() != slot:
            moved = slots.value()
            slots.delete()
            txn.put(slot, moved, True, True, False, view.slots)
            txn.put(moved, slot, True, True, False, view.slotof)
        else:
            slots.delete()

    # -- whole-store operations ------------------------------------------------------------------

    def clear(self) -> None:
        self._reclaim_stale_readers()  # the dropped pages are reusable only past every reader
        self._write(_DELETE, self._clear_in)

    def _clear_in(self, txn: lmdb.Transaction, view: _View) -> None:
        for db in (view.data, view.slots, view.slotof, view.claims, view.ends):
            txn.drop(db, delete=False)
        self._set_index_status(txn, _VALID if self._track_keys else _NONE)

    def size(self) -> int:
        # Inlined like get: the generic path costs about 450 ns more.
        try:
            txn = self._begin()
            try:
                view = self._view
                if txn.get(_STATE_KEY) == view.raw:
                    return txn.stat(view.data)["entries"]  # type: ignore[no-any-return]
            finally:
                txn.abort()
        except lmdb.Error:
            pass
        return self._read(_SIZE, self._size_in)  # type: ignore[no-any-return]

    def _size_in(self, txn: lmdb.Transaction, view: _View) -> int:
        return txn.stat(view.data)["entries"]  # type: ignore[no-any-return]

    def scan(self, prefix: bytes, start: bytes, limit: int) -> tuple[list[tuple[bytes, bytes]], bool]:
        return self._read(_SCAN, self._scan_in, prefix, start, limit)  # type: ignore[no-any-return]

    def _scan_in(
        self, txn: lmdb.Transaction, view: _View, prefix: bytes, start: bytes, limit: int
    ) -> tuple[list[tuple[bytes, bytes]], bool]:
        cursor = txn.cursor(view.data)
        if not cursor.set_range(max(prefix, start)):
            return [], False
        end = prefix_end(prefix)
        wanted = limit + 1 if limit > 0 else -1
        rows: list[tuple[bytes, bytes]] = []
        for row in cursor.iternext():
            key = row[0]
            if (key >= end) if end is not None else (prefix and not key.startswith(prefix)):
                break
            rows.append(row)
            if len(rows) == wanted:
                rows.pop()
                return rows, True
        return rows, False

    # -- random keys ---------------------------------------------------------------------------

    def random_key(self, prefix: bytes) -> bytes | None:
        """A uniform key among those with ``prefix``.

        Costs, with n keys in the store and k of them matching:

        * no prefix, with the index: two index reads (the last slot, a random
          slot), whatever n.
        * a prefix with at most 64 matching keys: one cursor read of them.
        * a prefix with more, with the index: random slots until one matches,
          at most 64 tries (expected n/k); if none does, as without the index.
        * without the index (or for a rare prefix): every matching key is
          read, 20,000 per transaction with a pause between: O(k), O(n)
          without a prefix. Uniform over the keys read; under concurrent
          writes, over keys that existed while their chunk was read.
        """
        if not prefix:
            try:
                txn = self._begin()
                try:
                    view = self._view
                    if txn.get(_STATE_KEY) == view.raw and view.indexed:
                        found = _random_slot(txn, view)
                        if found is not _WALK:
                            return found  # type: ignore[return-value]
                finally:
                    txn.abort()
            except lmdb.Error:
                pass
        return self._random_key_slow(prefix)

    def _random_key_slow(self, prefix: bytes) -> bytes | None:
        found = self._read(_INDEX, self._random_probe, prefix)
        if found is _WALK and self._resume_orphaned_rebuild():
            found = self._read(_INDEX, self._random_probe, prefix)
        if found is _WALK:
            return self._random_walk(prefix)
        return found  # type: ignore[no-any-return]

    def _resume_orphaned_rebuild(self) -> bool:
        """Finish a rebuild that nobody runs any more; whether one was finished.

        A rebuild whose process was killed, or whose greenlet was killed
        (GreenletExit at a pause between its transactions), leaves the index
        marked ``b<owner>.<token>``: writers keep it up, but it is never
        marked valid, and ``random_key()`` walks every key until a rebuild.
        A rebuild is running when some process holds the shared rebuild lock
        on the side file (the kernel drops it with its process) or one runs
        in this process. Checked only here, where sampling would otherwise
        walk the keys: one ``fcntl`` call beside milliseconds of reading.
        The partial index is consistent (every indexed key has its slot), so
        the build resumes: it indexes the keys still missing.
        """
        state = self._view.state
        if state is None or not state.index.startswith(_BUILDING) or self._side.rebuild_running():
            return False
        self._rebuild(resume=state.index)
        return True

    def _random_probe(self, txn: lmdb.Transaction, view: _View, prefix: bytes) -> bytes | None | object:
        """Sample in one short read; _WALK when only walking the keys can answer."""
        if not prefix:
            return _random_slot(txn, view) if view.indexed else _WALK
        # A small prefix range: read it whole.
        cursor = txn.cursor(view.data)
        if not cursor.set_range(prefix):
            return None
        head = list(islice(cursor.iternext(keys=True, values=False), _PROBE_KEYS + 1))
        head = head[: _matching(head, prefix)]
        if len(head) <= _PROBE_KEYS:
            return head[int(random() * len(head))] if head else None
        if view.indexed:
            # Uniform over the index, kept only when it has the prefix: uniform over the prefix.
            slots = txn.cursor(view.slots)
            if slots.last():
                count = int.from_bytes(slots.key(), "big") + 1
                for _ in range(_REJECTION_TRIES):
                    if slots.set_key(int(random() * count).to_bytes(8, "big")):
                        key = slots.value()
                        if key.startswith(prefix):
                            return key  # type: ignore[no-any-return]
        return _WALK

    def _random_walk(self, prefix: bytes) -> bytes | None:
        """Sample by reading every matching key, a chunk per transaction, pausing between chunks.

        One pass of weighted reservoir sampling: each chunk's keys replace the
        choice with probability (chunk size / keys seen), so the result is
        uniform over the keys read, in O(1) memory.
        """
        chosen: bytes | None = None
        seen = 0
        after: bytes | None = None
        while True:
            chunk, done = self._read(_INDEX, self._walk_chunk, prefix, after)
            if chunk:
                seen += len(chunk)
                if random() * seen < len(chunk):
                    chosen = chunk[int(random() * len(chunk))]
                after = chunk[-1]
            if done:
                return chosen
            pause()

    def _walk_chunk(
        self, txn: lmdb.Transaction, view: _View, prefix: bytes, after: bytes | None
    ) -> tuple[list[bytes], bool]:
        """Up to _WALK_CHUNK matching keys after ``after``, and whether they were the last ones.

        Reads in doubling steps, so a short prefix range costs about its own size.
        """
        cursor = txn.cursor(view.data)
        if not cursor.set_range(prefix if after is None else after + b"\x00"):
            return [], True
        keys: list[bytes] = []
        step = _PROBE_KEYS
        found = cursor.iternext(keys=True, values=False)
        while len(keys) < _WALK_CHUNK:
            wanted = min(step, _WALK_CHUNK - len(keys))
            got = list(islice(found, wanted))
            matching = _matching(got, prefix)
            keys += got[:matching]
            if matching < len(got) or len(got) < wanted:
                return keys, True
            step *= 2
        return keys, False

    def rebuild_key_list(self) -> None:
        """Build the index from the data, a slice per transaction; writers keep it up meanwhile.

        The index is emptied and marked as being built (``b<pid>.<token>``);
        from then on every writer maintains it, and the builder adds each key
        it finds unindexed. When the builder has seen every key the index is
        marked valid. A clear, a restore or another rebuild replaces the
        token, and this builder stops: the index they leave is complete.
        While it runs, this process holds the shared rebuild lock of the side
        file; a build left behind by a killed process or greenlet is resumed
        by the next ``random_key()`` (see :meth:`_resume_orphaned_rebuild`).
        """
        self._rebuild(resume=None)

    def _rebuild(self, resume: bytes | None) -> None:
        """Run a rebuild: a new one, or, with ``resume``, take over the orphaned build marked ``resume``."""
        owner = _pid()
        token = _BUILDING + b"%d." % owner + secrets.token_hex(4).encode()
        side = self._side
        side.begin_rebuild()
        try:
            if resume is None:
                generation = self._write(_REBUILD, self._start_rebuild, token)
            else:
                generation = self._write(_REBUILD, self._take_over_rebuild, token, resume)
                if generation is None:
                    return  # another process took it over first, or the state moved on
            after: bytes | None = None
            while True:
                progress = self._write_unchecked(_REBUILD, self._rebuild_slice, token, owner, generation, after)
                if progress is None:
                    return
                after = progress
                pause()  # GreenletExit lands here, between transactions: nothing to undo
        finally:
            # Never yields. A killed greenlet's build stays marked, with no live owner:
            # the next random_key() that would walk resumes it.
            if _pid() == owner:
                side.end_rebuild()

    def _start_rebuild(self, txn: lmdb.Transaction, view: _View, token: bytes) -> int:
        txn.drop(view.slots, delete=False)
        txn.drop(view.slotof, delete=False)
        return self._set_index_status(txn, token).state.generation  # type: ignore[union-attr]

    def _take_over_rebuild(self, txn: lmdb.Transaction, view: _View, token: bytes, orphan: bytes) -> int | None:
        """Mark the orphaned build ``orphan`` as this builder's, keeping its partial index; None if it moved on."""
        state = view.state
        if state is None or state.index != orphan:
            return None
        return self._put_state(txn, state._replace(index=token)).state.generation  # type: ignore[union-attr]

    def _rebuild_slice(
        self, txn: lmdb.Transaction, view: _View, token: bytes, owner: int, generation: int, after: bytes | None
    ) -> bytes | None:
        """Index the keys after ``after`` for a few milliseconds; the last key seen, or None when finished."""
        state = view.state
        assert state is not None
        if state.index != token or state.generation != generation or _pid() != owner:
            return None  # a clear, a restore or another rebuild took over (or this is a forked copy)
        cursor = txn.cursor(view.data)
        if not (cursor.first() if after is None else cursor.set_range(after + b"\x00")):
            self._set_index_status(txn, _VALID)
            return None
        slots = txn.cursor(view.slots)
        slotof = view.slotof
        count = int.from_bytes(slots.key(), "big") + 1 if slots.last() else 0
        deadline = perf_counter() + _SLICE_SECONDS
        put = txn.put
        for n, key in enumerate(cursor.iternext(keys=True, values=False), 1):
            slot = count.to_bytes(8, "big")
            if put(key, slot, True, False, False, slotof):
                slots.put(slot, key, False, True, True)
                count += 1
            if not n & 255 and perf_counter() > deadline:
                return key  # type: ignore[no-any-return]
        self._set_index_status(txn, _VALID)
        return None

    # -- snapshots -----------------------------------------------------------------------------

    def begin_backup(self, allow_concurrent_writes: bool) -> BackupReader:
        """A point-in-time reader in both modes: one LMDB read transaction; writers go on."""
        side = self._side
        if side.backup_owner is not None or not side.try_lock(_BACKUP_LOCK):
            raise BackupInProgressError("another backup is in progress")
        side.backup_owner = self
        try:
            self._reclaim_stale_readers()  # e.g. the slot of a backup whose process was killed
            self._make_room_for_backup()
            reader = self._read(_SCAN, self._start_backup)
        except BaseException:
            self._end_backup(None)
            raise
        self._backup_reader = reader
        return reader  # type: ignore[no-any-return]

    def _make_room_for_backup(self) -> None:
        """Grow the map before a backup's snapshot is taken, so that writes during it rarely need a resize.

        Pages freed while the snapshot is read cannot be reused, so writers
        take new ones; and a resize ends the backup (it ends every
        transaction of the process). The map is made at least twice the
        pages in use and ``_BACKUP_ROOM``, within ``max_map_size``, when that
        takes at most half the disk's free space (else it stays as it is).
        """
        used = self._read(_SCAN, self._used_bytes)
        want = max(2 * used, _BACKUP_ROOM)
        cap = self._spec.max_map_size
        if cap is not None:
            want = min(want, cap)
        vfs = os.statvfs(os.path.dirname(self._spec.path))
        # Only with room to spare on the disk: the backup file is often written beside the store.
        if want > self._map_size and want - self._map_size <= vfs.f_bavail * vfs.f_frsize // 2:
            try:
                self._resize(_SCAN, True, self._resizes, want)
            except DiskStoreFullError:
                pass

    def _used_bytes(self, txn: lmdb.Transaction, _view: _View) -> int:
        return self._pages_in_use(txn) * _PAGE_SIZE

    def _start_backup(self, txn: lmdb.Transaction, view: _View) -> _DiskBackupReader:
        env = self._env
        assert env is not None
        # The reader's own transaction, which outlives this one; its snapshot names its generation.
        snapshot = env.begin()
        try:
            state = _State.decode(snapshot.get(_STATE_KEY))
            if state.restorer and (self._side.restoring or self._side.held_elsewhere(_RESTORE_LOCK)):
                raise RestoreInProgressError("a restore is in progress; retry when it completes")
            return _DiskBackupReader(self, snapshot, self._dbs[state.generation][0])
        except BaseException:
            snapshot.abort()
            raise

    def _end_backup(self, reader: _DiskBackupReader | None) -> None:
        if self._backup_reader is reader:
            self._backup_reader = None
        side = self._side
        if side.backup_owner is self:
            side.backup_owner = None
            side.unlock(_BACKUP_LOCK)
            side.close_if_unused()

    def replace_all(self, batches: Iterator[list[tuple[bytes, bytes]]]) -> int:
        """Fill the other generation in short transactions, then flip the state in one.

        Writers in every process see the restore flag and fail fast; readers
        keep the live generation until the flip. If ``batches`` raises, the
        half-filled generation is dropped and the live one was never touched.
        """
        side = self._side
        if side.backup_owner is not None or side.held_elsewhere(_BACKUP_LOCK):
            raise BackupInProgressError("a backup is in progress; retry when it completes")
        if side.restoring or not side.try_lock(_RESTORE_LOCK):
            raise RestoreInProgressError("a restore is in progress; retry when it completes")
        side.restoring = True
        owner = _pid()
        staging: int | None = None
        try:
            self._reclaim_stale_readers()
            staging = self._write_unchecked(_WRITE, self._start_restore, owner)
            for batch in batches:
                pause()  # reading the batch was work too
                for start in range(0, len(batch), _RESTORE_ROWS):
                    rows = batch[start : start + _RESTORE_ROWS]
                    self._write_unchecked(_WRITE, self._restore_rows, owner, staging, rows)
                    pause()
            return self._write_unchecked(_WRITE, self._finish_restore, owner, staging)  # type: ignore[no-any-return]
        except BaseException:
            if staging is not None and _pid() == owner:
                try:
                    self._write_freeing(_WRITE, self._abandon_restore, owner)
                except KVError:
                    pass  # the flag stays; once the lock below is free, the next writer drops the generation
            raise
        finally:
            if _pid() == owner:
                side.restoring = False
                side.unlock(_RESTORE_LOCK)
                side.close_if_unused()

    def _start_restore(self, txn: lmdb.Transaction, view: _View, owner: int) -> int:
        state = view.state
        assert state is not None
        # This process holds the restore lock, so a restorer recorded here died; its generation goes too.
        staging = 1 - state.generation
        self._drop_generation(txn, staging)
        self._put_state(txn, state._replace(restorer=owner))
        return staging

    def _restore_rows(
        self, txn: lmdb.Transaction, view: _View, owner: int, staging: int, rows: list[tuple[bytes, bytes]]
    ) -> None:
        _check_restorer(view, owner)
        data, slots_db, slotof = self._dbs[staging]
        cursor = txn.cursor(data)
        ascending = (not cursor.last() or rows[0][0] > cursor.key()) and all(
            rows[i][0] < rows[i + 1][0] for i in range(len(rows) - 1)
        )
        if not self._track_keys:
            if ascending:
                cursor.putmulti(rows, append=True)
            else:
                for key, value in rows:
                    txn.put(key, value, True, True, False, data)
            return
        slots = txn.cursor(slots_db)
        count = int.from_bytes(slots.key(), "big") + 1 if slots.last() else 0
        if ascending:
            # Snapshots come in key order: append to every database, no searches.
            # Generators, not lists: each pair is freed at once, so the restore
            # does not keep triggering the garbage collector.
            cursor.putmulti(rows, append=True)
            slots.putmulti((((count + i).to_bytes(8, "big"), key) for i, (key, _) in enumerate(rows)), append=True)
            txn.cursor(slotof).putmulti(((key, (count + i).to_bytes(8, "big")) for i, (key, _) in enumerate(rows)), append=True)
            return
        for key, value in rows:
            if txn.replace(key, value, data) is None:
                slot = count.to_bytes(8, "big")
                txn.put(key, slot, True, True, False, slotof)
                slots.put(slot, key, False, True, True)
                count += 1

    def _finish_restore(self, txn: lmdb.Transaction, view: _View, owner: int, staging: int) -> int:
        state = _check_restorer(view, owner)
        self._drop_generation(txn, state.generation)
        for db in self._claims:  # the leases were on the keys the flip replaces
            txn.drop(db, delete=False)
        self._put_state(txn, _State(staging, _VALID if self._track_keys else _NONE, 0))
        return txn.stat(self._dbs[staging][0])["entries"]  # type: ignore[no-any-return]

    def _abandon_restore(self, txn: lmdb.Transaction, view: _View, owner: int) -> None:
        state = view.state
        if state is None or state.restorer != owner:
            return
        self._drop_generation(txn, 1 - state.generation)
        self._put_state(txn, state._replace(restorer=0))

    # -- claims (leases), batches and prefixes: the steps are in disk_ops ----------------------

    def claim_keys(self, keys: list[bytes], ttl_ms: int, owner: bytes) -> list[ClaimRecord | None]:
        """One lookup of the key and one of its lease per key, one write per lease, in one transaction."""
        return self._write(_WRITE, disk_ops.claim_keys, keys, ttl_ms, owner, self.clock)  # type: ignore[no-any-return]

    def claim_random(self, prefix: bytes, count: int, ttl_ms: int, owner: bytes) -> list[ClaimRecord]:
        """One transaction; drawn as :mod:`~locust_kv.backends.disk_ops` describes.

        Random index slots checked against their lease (expected k/c draws
        per key for c claimable of k keys); when they keep missing, an exact
        read of the prefix range and its lease keys, O(k + leases). Without a
        prefix, an exhausted pool costs O(log n) and a nearly exhausted one
        about 4n/c draws; with a prefix, a nearly exhausted pool pays the
        exact read on every call.
        """
        return self._write(  # type: ignore[no-any-return]
            _WRITE, disk_ops.claim_random, prefix, count, ttl_ms, owner, self.clock
        )

    def release_claims(self, refs: list[tuple[bytes, int]]) -> list[bool]:
        return self._write(_DELETE, disk_ops.release_claims, refs, self.clock)  # type: ignore[no-any-return]

    def complete_claims(self, refs: list[tuple[bytes, int]], delete: bool) -> list[bool]:
        return self._write(  # type: ignore[no-any-return]
            _DELETE, disk_ops.complete_claims, refs, delete, self.clock, self._delete_in
        )

    def renew_claims(self, refs: list[tuple[bytes, int]], ttl_ms: int) -> list[int | None]:
        return self._write(_WRITE, disk_ops.renew_claims, refs, ttl_ms, self.clock)  # type: ignore[no-any-return]

    def allocation_stats(self, prefix: bytes) -> tuple[int, int, int, int]:
        """One read transaction: O(log n + ended leases) without a prefix, O(k + leases of the range) with one."""
        return self._read(_SIZE, disk_ops.allocation_stats, prefix, self.clock)  # type: ignore[no-any-return]

    def compare_and_swap_detailed(self, key: bytes, old: bytes | None, new: bytes) -> tuple[bool, bytes | None]:
        return self._write(  # type: ignore[no-any-return]
            _WRITE, disk_ops.compare_and_swap_detailed, key, old, new, self._index_add
        )

    def compare_and_delete_detailed(self, key: bytes, old: bytes) -> tuple[bool, bytes | None]:
        return self._write(  # type: ignore[no-any-return]
            _DELETE, disk_ops.compare_and_delete_detailed, key, old, self._delete_in
        )

    def count(self, prefix: bytes) -> int:
        """The number of keys with ``prefix``, in one read transaction.

        Without a prefix, the database's entry count: O(1). With one, a
        cursor walk of the range, O(k) for k matching keys (30 ms for 100,000
        on a loaded test machine): LMDB's B-tree keeps no counts, so no
        O(log n) count exists.
        """
        return self._read(_SIZE, disk_ops.count_range_in, prefix)  # type: ignore[no-any-return]

    def random_keys(self, prefix: bytes, count: int, unique: bool) -> list[bytes]:
        """In one read transaction; see :func:`~locust_kv.backends.disk_ops.random_keys` for the costs."""
        return self._read(_INDEX, disk_ops.random_keys, prefix, count, unique)  # type: ignore[no-any-return]

    def pop_random(self, prefix: bytes, count: int) -> list[tuple[bytes, bytes]]:
        """Chosen as :meth:`claim_random` chooses (same costs), removed in the same transaction."""
        return self._write(  # type: ignore[no-any-return]
            _DELETE, disk_ops.pop_random, prefix, count, self.clock, self._index_remove
        )

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        return self._read(_READ, disk_ops.get_many, keys)  # type: ignore[no-any-return]

    def set_many(self, items: list[tuple[bytes, bytes]]) -> None:
        """One write transaction: all or nothing (a full map: DiskStoreFullError, nothing written)."""
        self._write(_WRITE, disk_ops.set_many, items, self._index_add)

    def delete_many(self, keys: list[bytes]) -> int:
        return self._write(_DELETE, disk_ops.delete_many, keys, self._delete_in)  # type: ignore[no-any-return]

    def delete_prefix(self, prefix: bytes, limit: int) -> tuple[int, bool]:
        """Transactions of a few milliseconds each, with a pause between them.

        Without a prefix and a limit, one transaction drops every database
        as :meth:`clear` does (its index status included).
        """
        if not prefix and limit <= 0:
            self._reclaim_stale_readers()  # as clear does: the dropped pages are reusable only past every reader
            removed: int = self._write(_DELETE, self._clear_counted)
            return removed, True
        removed = 0
        while True:
            step = limit - removed if limit > 0 else -1
            got, empty = self._write(
                _DELETE, disk_ops.delete_range_slice, prefix, step, _SLICE_SECONDS, self._index_remove, perf_counter
            )
            removed += got
            if empty or 0 < limit <= removed:
                return removed, empty
            pause()

    def _clear_counted(self, txn: lmdb.Transaction, view: _View) -> int:
        removed: int = txn.stat(view.data)["entries"]
        self._clear_in(txn, view)
        return removed

    def scan_keys(self, prefix: bytes, start: bytes, limit: int) -> tuple[list[bytes], bool]:
        return self._read(_SCAN, disk_ops.scan_keys, prefix, start, limit)  # type: ignore[no-any-return]

    def stats(self) -> dict[str, int]:
        """One read transaction: O(1) for keys and bytes, O(log n + ended leases) for the two lease counts."""
        return self._read(_SIZE, self._stats_in)  # type: ignore[no-any-return]

    def _stats_in(self, txn: lmdb.Transaction, view: _View) -> dict[str, int]:
        return disk_ops.stats(txn, view, self.clock, self._pages_in_use(txn), _PAGE_SIZE)

    # -- lifecycle -------------------------------------------------------------------------------

    # -- markers: records of the main database, outside the generations ----------

    def read_marker(self, name: bytes) -> bytes | None:
        return self._read(_READ, _get_marker, _MARKER_PREFIX + name)  # type: ignore[no-any-return]

    def write_marker(self, name: bytes, value: bytes) -> None:
        self._write_unchecked(_WRITE, _put_marker, _MARKER_PREFIX + name, value)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        reader = self._backup_reader
        if reader is not None:
            reader.close()
        with self._open_lock:
            self._close_env()
        _live.discard(self)
        self._side.release()


def _pid() -> int:
    return os.getpid()


def _get_marker(txn: lmdb.Transaction, _view: _View, key: bytes) -> bytes | None:
    return txn.get(key)  # type: ignore[no-any-return]


def _put_marker(txn: lmdb.Transaction, _view: _View, key: bytes, value: bytes) -> None:
    txn.put(key, value)


def _reserve_lock_file(path: str, max_readers: int) -> None:
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
            raise DiskStoreFullError(f"no room on the disk for the store's lock file: {_os_error(exc)}") from exc
        # A filesystem without fallocate: LMDB makes the file as usual.
    finally:
        if fd >= 0:
            os.close(fd)


def _set_mapsize(env: lmdb.Environment, size: int) -> None:
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
            _real_sleep(0.0005)
    env.set_mapsize(size)


def _quiesce(env: lmdb.Environment) -> None:
    """Wait for what other threads began before thread mode (unlocked) to end: microseconds, usually."""
    _real_sleep(0.02)
    me = str(os.getpid())
    for _ in range(1_000):
        readers = [line.split() for line in env.readers().splitlines()[1:]]
        if not any(fields[:1] == [me] and fields[-1] != "-" for fields in readers):
            return
        _real_sleep(0.001)


def _random_slot(txn: lmdb.Transaction, view: _View) -> bytes | None | object:
    """A uniform key from the (valid) index; _WALK if the index has holes."""
    slots = txn.cursor(view.slots)
    if not slots.last():
        return None
    count = int.from_bytes(slots.key(), "big") + 1
    for _ in range(4):
        if slots.set_key(int(random() * count).to_bytes(8, "big")):
            return slots.value()  # type: ignore[no-any-return]
    return _WALK


def _check_restorer(view: _View, owner: int) -> _State:
    state = view.state
    if state is None or state.restorer != owner or _pid() != owner:
        raise RestoreInProgressError("the restore lost its claim on the store (the process forked)")
    return state


def _matching(keys: list[bytes], prefix: bytes) -> int:
    """How many of the ascending ``keys`` (all >= ``prefix``) start with ``prefix``."""
    if not prefix:
        return len(keys)
    end = prefix_end(prefix)
    if end is None:
        return next((i for i, key in enumerate(keys) if not key.startswith(prefix)), len(keys))
    return bisect_left(keys, end)


class _DiskBackupReader(BackupReader):
    """Every entry of one LMDB snapshot, read batch by batch across greenlet switches.

    Only this object refers to the read transaction: no cursor or transaction
    lives in a local variable across a ``yield``, so that a forked child can
    drop it (see :meth:`DiskBackend._forget_inherited`).
    """

    point_in_time = True

    def __init__(self, backend: DiskBackend, txn: lmdb.Transaction, data: Any) -> None:
        self._backend = backend
        self._txn: lmdb.Transaction | None = txn
        self._data = data
        self._why_stopped = ""
        self._closed = False

    def batches(self, batch_size: int) -> Iterator[list[tuple[bytes, bytes]]]:
        after: bytes | None = None
        while True:
            batch = self._batch(after, max(1, batch_size))
            if not batch:
                return
            yield batch
            after = batch[-1][0]

    def _batch(self, after: bytes | None, size: int) -> list[tuple[bytes, bytes]]:
        backend = self._backend
        with backend._op_lock if backend._threads else nullcontext():  # see DiskBackend._enter_thread_mode
            txn = self._txn
            if txn is None:
                raise DiskStoreScanError(self._why_stopped or "the backup reader is closed")
            try:
                cursor = txn.cursor(self._data)
                if not (cursor.first() if after is None else cursor.set_range(after + b"\x00")):
                    return []
                return list(islice(cursor.iternext(), size))
            except lmdb.Error as exc:
                raise map_lmdb_error(exc, _SCAN) from exc

    def _interrupt(self) -> None:
        """The map is about to be resized, which ends every transaction of the process."""
        txn, self._txn = self._txn, None
        if txn is not None:
            txn.abort()
            self._why_stopped = "the backup stopped: the store's map grew while it was read; retry the backup"

    def _detach(self) -> None:
        """In a forked child: forget the parent's transaction without aborting it."""
        self._txn = None
        self._why_stopped = "the backup stopped: the process forked while it ran"
        self._closed = True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        txn, self._txn = self._txn, None
        if txn is not None:
            txn.abort()
        self._backend._end_backup(self)


# ---------------------------------------------------------------------------
# Options.


@dataclass(frozen=True)
class DiskSpec:
    """Options of the disk backend. Two specs with the same path denote one store."""

    path: str
    track_keys: bool = True
    durable: bool = False
    writemap: bool = True
    map_size: int = DEFAULT_MAP_SIZE
    max_map_size: int | None = None
    max_readers: int = _DEFAULT_MAX_READERS
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
        }

    def create(self) -> DiskBackend:
        return DiskBackend(self)


def configure(
    *,
    path: object = None,
    track_keys: object = True,
    durable: object = False,
    writemap: object = True,
    map_size: object = DEFAULT_MAP_SIZE,
    max_map_size: object = None,
    max_readers: object = _DEFAULT_MAX_READERS,
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

    Creates the path's missing directories. Raises DiskPathError for a path
    that is a directory or whose directory cannot be created,
    UnsafeFilesystemError for a path on a network filesystem, and
    InvalidOptionsError for unknown options or values of the wrong type.
    """
    reject_unknown("disk", options)
    for name, value in (("track_keys", track_keys), ("durable", durable), ("writemap", writemap)):
        if not isinstance(value, bool):
            raise InvalidOptionsError(f"{name} must be a bool, not {type(value).__name__}")
    size = _size_option("map_size", map_size)
    cap = None if max_map_size is None else _size_option("max_map_size", max_map_size, _MIN_CAP)
    if cap is not None and cap < size:
        raise InvalidOptionsError(f"max_map_size ({cap}) must be at least map_size ({size})")
    if type(max_readers) is not int or not 1 <= max_readers <= 65_536:
        raise InvalidOptionsError("max_readers must be an int between 1 and 65536")
    resolved = _resolve_path(path)
    check_local(resolved)
    return DiskSpec(
        path=resolved,
        track_keys=track_keys,  # type: ignore[arg-type]
        durable=durable,  # type: ignore[arg-type]
        writemap=writemap,  # type: ignore[arg-type]
        map_size=size,
        max_map_size=cap,
        max_readers=max_readers,
    )


def _size_option(name: str, value: object, least: int = _MIN_MAP_SIZE) -> int:
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
        raw = os.fspath(path)  # type: ignore[call-overload]
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
        raise DiskPathError(f"cannot create the directory of the disk store {full}: {_os_error(exc)}") from exc
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
            raise DiskPathError(f"cannot inspect the disk store file {path}: {_os_error(exc)}") from exc
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
