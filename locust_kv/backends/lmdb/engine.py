"""The environment and its transactions: opening, the state record, the run loop, resizes, thread mode.

Every operation is one LMDB transaction, run by :meth:`Engine._run` as
``op(txn, view, *args)``: the transaction first reads the state record and
compares it with what this process last saw (the :class:`~.layout.View`), so
a clear, restore or rebuild done by another process is noticed at once. A
transaction that fails because the map is full, or was grown by another
process, is retried after the map is grown or adopted (:meth:`Engine._resize`,
with the size policy of :mod:`.growth`); any other LMDB error becomes its
catalogued error (:mod:`.errors`).

Fork. The environment is opened lazily by the first operation in each
process. In a forked child (:mod:`.forks`) every reference to inherited
transactions is dropped before the inherited environment is closed, so that
the parent's reader slots stay untouched.

Threads. ``set_mapsize`` must not run while another OS thread of the process
is inside a transaction. Greenlets share one thread and never need a lock:
the transaction mode starts as :data:`~.threads.GREENLETS`; the first resize that finds
other threads in the process chooses :class:`~.threads.ThreadMode` for good, whose lock
every transaction then holds (the unlocked inlined fast paths of the backend
see ``_inline`` False and give way to :meth:`Engine._read` / :meth:`Engine._write`).

A long read transaction that outlives an operation (a backup's) registers as
the engine's :class:`Snapshot`: a resize interrupts it, a fork detaches it.

This module is over 500 lines: opening, the run loop, error recovery and
resizing share the engine's state (the environment, the view, the map size,
the mode) and are read together; the size policy itself is in
:mod:`.growth`, the thread modes in :mod:`.threads`.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Generator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol, TypeVar

import lmdb

from ..._cooperative import pause
from ...errors import (
    BucketNotFoundError,
    DiskStoreFullError,
    DiskStoreOpenError,
    QuotaExceededError,
    RestoreInProgressError,
    StoreClosedError,
)
from ..base import quota_message
from . import expiry, forks, growth
from .errors import DELETE, NO_SPACE, OPEN, Family, map_lmdb_error, os_error
from .layout import (
    BUILDING,
    CLAIMS_DB,
    CLOSED_VIEW,
    DB_NAMES,
    ENDS_DB,
    EXPIRY_DB_NAMES,
    FORMAT,
    FORMAT_KEY,
    MAX_DBS,
    NONE,
    PAGE_SIZE,
    RANKLESS_FORMAT,
    RANKS_DB_NAMES,
    STATE_KEY,
    VALID,
    State,
    View,
    data_pages,
    put_state,
)
from .locks import RESIZE_LOCK, RESTORE_LOCK, SPARE_BYTES, SideFile, allocate_lock
from .spec import MIN_MAP_SIZE
from .threads import GREENLETS, ThreadMode, TransactionMode

if TYPE_CHECKING:
    from lmdb import _Database as Db
    from lmdb import _StatDict as StatDict

    from .layout import Generation, Txn
    from .spec import DiskSpec

__all__ = ["ATTEMPTS", "Engine", "Snapshot"]

T = TypeVar("T")

ATTEMPTS: Final = 8
"""Map adoptions or growths one operation may go through before it gives up."""


class _NoRoom(Exception):
    """Inside ``Engine._run``: the write would use the reserve of a map at its limit."""


class Snapshot(Protocol):
    """A read transaction that outlives an operation (a backup's), as the engine sees it."""

    def interrupt(self) -> None:
        """The map is about to be resized, which ends every transaction of the process: abort it now."""

    def detach(self) -> None:
        """In a forked child: forget the parent's transaction without aborting it."""

    def close(self) -> None:
        """The store closes."""


class _StepRead:
    """The read transaction of an operation done in steps (:meth:`Engine._read_in_steps`), as the engine holds it.

    The operation's generator holds the transaction and its cursors in its
    frame between steps, so it is held here too: a forked child closes it
    (:meth:`detach`), leaving no reference that the child's ``env.close()``
    would abort, which would free the parent's reader slot.
    """

    __slots__ = ("steps", "txn")

    def __init__(self) -> None:
        self.txn: Txn | None = None
        self.steps: Generator[None, None, object] | None = None

    def interrupt(self) -> None:
        """End the transaction (a resize is coming, or the operation is over)."""
        txn, self.txn = self.txn, None
        if txn is not None:
            txn.abort()

    def detach(self) -> None:
        """In a forked child: forget the parent's transaction without aborting it."""
        self.txn = None
        steps, self.steps = self.steps, None
        if steps is not None:
            try:
                steps.close()  # drops the frame's transaction and cursors: a dereference, not an abort
            except ValueError:
                pass  # running in a thread that fork() did not copy: it will never run again


class _Interrupted(Exception):
    """A resize ended the transaction of an operation done in steps between two of them: start it again."""


# ---------------------------------------------------------------------------
# The engine.


class Engine:
    """One store's LMDB environment in this process, and the machinery every operation runs through."""

    clock: Callable[[], int]
    """Now in Unix milliseconds (the backend's, see :attr:`~locust_kv.backends.base.Backend.clock`)."""

    def __init__(self, spec: DiskSpec) -> None:
        self.location = spec.path
        self._spec = spec
        self._track_keys = spec.track_keys
        self._closed = False
        self._env: lmdb.Environment | None = None
        self._begin: Callable[..., Txn] = self._lazy_begin
        self._open_lock = allocate_lock()
        self._mode: TransactionMode = GREENLETS
        self._inline = True  # self._mode.inline, read by every fast path
        self._map_size = 0
        self._at_limit = False  # the map cannot grow any more: writes that add data keep the reserve free
        self.max_keys = spec.max_keys
        self.max_bytes = spec.max_bytes
        # This handle's quota: its writes that add data leave the fast paths for _run, which checks it.
        self._quota = spec.max_keys is not None or spec.max_bytes is not None
        self._resizes = 0
        self._dbs: tuple[Generation, ...] = ()
        self._claims: tuple[Db, Db] | None = None  # the leases' databases (by key, by end), shared by both generations
        self._all_dbs: tuple[Db, ...] = ()  # the main database, the twelve of the generations and the leases' two
        self._view = CLOSED_VIEW
        self._verified_txn = -1
        """The id of a read snapshot whose state record was found equal to the view's (see :meth:`_verify`)."""
        self._snapshot: Snapshot | None = None
        self._step_reads: set[_StepRead] = set()  # the read transactions of operations done in steps
        self._side = SideFile.acquire(spec.path)
        try:
            # Fail at open_kv, not at first use, on a store that cannot be opened.
            self._open_env()
            self._close_env()
        except BaseException:
            self._side.release()
            raise
        forks.track(self)

    # -- the environment ----------------------------------------------------

    def _lazy_begin(self, *args: Any) -> Txn:
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
            with side.guard, side.exclusive(RESIZE_LOCK):
                agreed = side.agreed_size()
                floor = max(agreed, growth.file_size(spec), MIN_MAP_SIZE)
                wanted = max(spec.map_size, floor)
                growth.reserve_lock_file(spec.path, spec.max_readers)
                side.reserve()
                # LMDB initialises an empty file, or checks that an existing one is LMDB's, and maps
                # it without writing to the map; only then is the file extended and backed.
                env = self._lmdb_open(floor)
                try:
                    try:
                        size = growth.reserve_space(spec.path, wanted, floor)
                    except DiskStoreFullError:
                        if spec.writemap:
                            raise  # mapping blocks the disk cannot back would be a SIGBUS later
                        size = floor  # pwrite reports a full disk; growth allocates first
                    if size != floor:
                        env.set_mapsize(size)
                    actual = env.info()["map_size"]
                    if actual > size:  # LMDB maps at least the pages in use
                        size = growth.reserve_space(spec.path, actual, actual)
                    if actual > agreed:
                        side.agree(actual)
                except BaseException:
                    env.close()
                    raise
        except lmdb.Error as exc:
            raise map_lmdb_error(exc, OPEN) from exc
        except OSError as exc:
            if exc.errno in NO_SPACE:
                raise DiskStoreFullError(f"the disk store is full: could not open it: {os_error(exc)}") from exc
            raise DiskStoreOpenError(f"could not open the disk store {spec.path}: {os_error(exc)}") from exc
        self._env = env
        self._map_size = env.info()["map_size"]
        try:
            self._at_limit = growth.at_final_size(spec, self._map_size, size < wanted)
            env.reader_check()  # reclaim the reader slots of killed processes
            for attempt in range(ATTEMPTS):
                resizes = self._resizes
                try:
                    self._dbs, self._claims, state = self._open_databases(env)
                    self._all_dbs = (env.open_db(None), *(db for dbs in self._dbs for db in dbs), *self._claims)
                    break
                except lmdb.Error as exc:  # another process grew the map meanwhile, or it is full
                    self._recover(OPEN, exc, attempt, resizes)
            else:
                raise DiskStoreOpenError("could not open the disk store: the map was resized too many times in a row")
        except BaseException:
            self._env = None
            env.close()
            raise
        self._begin = env.begin
        self._adopt(state)
        return env

    def _open_databases(self, env: lmdb.Environment) -> tuple[tuple[Generation, ...], tuple[Db, Db], bytes]:
        """Create or check the layout, in one write transaction; the handles (generations, leases) and the state.

        The leases' database is created when missing: stores made before
        claims existed open as they are, with no leases.
        """
        dbs: tuple[Generation, ...]
        with env.begin(write=True) as txn:
            fmt = txn.get(FORMAT_KEY)
            if fmt is None:
                if txn.cursor().first():
                    raise BucketNotFoundError(
                        f"{self._spec.path} is an LMDB file but not a locust_kv store (its databases are missing)"
                    )
                dbs = tuple(
                    _generation(env, txn, names, more, ranks, True)
                    for names, more, ranks in zip(DB_NAMES, EXPIRY_DB_NAMES, RANKS_DB_NAMES)
                )
                txn.put(FORMAT_KEY, FORMAT)
                txn.put(STATE_KEY, State(0, VALID if self._track_keys else NONE, 0).encode())
            elif fmt not in (FORMAT, RANKLESS_FORMAT):
                raise DiskStoreOpenError(
                    f"disk store format {fmt!r} is not supported (this version reads {FORMAT!r} and {RANKLESS_FORMAT!r})"
                )
            else:
                dbs = tuple(
                    _generation(env, txn, names, more, ranks, False)
                    for names, more, ranks in zip(DB_NAMES, EXPIRY_DB_NAMES, RANKS_DB_NAMES)
                )
                if fmt == RANKLESS_FORMAT:
                    _rank_old_store(txn, dbs)
                    txn.put(FORMAT_KEY, FORMAT)
            claims = (env.open_db(CLAIMS_DB, txn=txn), env.open_db(ENDS_DB, txn=txn))
            state = txn.get(STATE_KEY)
            State.decode(state)
            assert state is not None
        return dbs, claims, state

    def _close_env(self) -> None:
        env, self._env = self._env, None
        self._begin = self._lazy_begin
        self._view = CLOSED_VIEW
        self._verified_txn = -1
        self._dbs = ()
        self._claims = None
        if env is not None:
            env.close()

    def _lmdb_open(self, size: int) -> lmdb.Environment:
        spec = self._spec
        return lmdb.open(
            spec.path,
            map_size=size,
            subdir=False,
            max_dbs=MAX_DBS,
            max_readers=spec.max_readers,
            writemap=spec.writemap,
            sync=spec.durable,
            metasync=spec.durable,
            max_spare_txns=0,
        )

    def after_fork_in_child(self) -> None:
        """After fork, in the child: drop the parent's environment without touching its reader slots.

        py-lmdb does not abort a transaction that a forked child merely
        dereferences, but ``env.close()`` aborts every transaction still
        alive, and aborting a read transaction frees its reader slot in the
        shared lock file: the parent's slot. So the only transaction that may
        be alive here, a snapshot's, is detached first.
        """
        self._open_lock = allocate_lock()
        snapshot, self._snapshot = self._snapshot, None
        if snapshot is not None:
            snapshot.detach()
        for held in self._step_reads:
            held.detach()
        self._close_env()

    # -- snapshots: read transactions that outlive an operation -------------------

    def _hold_snapshot(self, snapshot: Snapshot) -> None:
        """Interrupt ``snapshot`` before any resize, detach it at a fork, close it with the store."""
        self._snapshot = snapshot

    def _drop_snapshot(self, snapshot: Snapshot) -> None:
        if self._snapshot is snapshot:
            self._snapshot = None

    def _begin_snapshot(self) -> Txn:
        """A read transaction of its own, for a snapshot (inside an operation, so the environment is open)."""
        env = self._env
        assert env is not None
        return env.begin()

    def _transaction_guard(self) -> AbstractContextManager[object]:
        """What a snapshot's reads hold, as every transaction does (see :class:`~.threads.TransactionMode`)."""
        return self._mode.guard()

    # -- state ------------------------------------------------------------------

    def _adopt(self, raw: bytes | None) -> View:
        """The view of the state record ``raw``, which becomes the one the fast paths compare with."""
        view = self._view = View(raw, State.decode(raw), self._dbs, self._at_limit or self._quota, self._claims)
        self._verified_txn = -1
        return view

    def _set_at_limit(self, at_limit: bool) -> None:
        """Record whether the map reached its final size; the fast paths of writes that add data follow."""
        self._at_limit = at_limit
        view = self._view
        if view.state is not None:
            self._view = View(view.raw, view.state, self._dbs, at_limit or self._quota, self._claims)
            self._verified_txn = -1

    def _check_writable(self, txn: Txn, raw: bytes | None) -> View:
        """In a write transaction whose state changed: adopt it, or refuse during a restore."""
        view = self._adopt(raw)
        state = view.state
        assert state is not None
        if state.restorer == 0:
            return view
        if self._side.restoring or self._side.held_elsewhere(RESTORE_LOCK):
            raise RestoreInProgressError("a restore is in progress; retry when it completes")
        # The restoring process died (its lock is free): drop its half-filled generation.
        for db in self._dbs[1 - state.generation]:
            txn.drop(db, delete=False)
        state = state.replace(restorer=0)
        raw = state.encode()
        txn.put(STATE_KEY, raw)
        return self._adopt(raw)

    def _verify(self, txn: Txn, view: View) -> bool:
        """Whether the state record in ``txn``'s snapshot is ``view``'s; remembers the snapshot's id when it is.

        The read fast paths skip the state read when their snapshot has the
        id remembered here: LMDB gives each committed write transaction a
        new id, so a snapshot with the same id is the same data, state
        record included. Any commit, in any process, gives the next read a
        new id, and that read checks the record again. Every change of the
        view forgets the id.
        """
        if txn.get(STATE_KEY) == view.raw:
            self._verified_txn = txn.id()
            return True
        return False

    # -- transactions --------------------------------------------------------------

    def _read(self, family: Family, op: Callable[..., T], *args: Any) -> T:
        """``op(txn, view, *args)`` in a read transaction, following map growth and state changes."""
        return self._run(family, False, False, op, args)

    def _write(self, family: Family, op: Callable[..., T], *args: Any) -> T:
        """``op(txn, view, *args)`` in a write transaction, committed; refused during a restore; grows the map.

        Operations of the delete family may use the map's reserve; the others
        add data and may not (see :meth:`_run`).
        """
        return self._run(family, True, True, op, args, family is not DELETE)

    def _read_in_steps(self, family: Family, op: Callable[..., Generator[None, None, T]], *args: Any) -> T:
        """``op(txn, view, *args)``, a generator that yields between steps, in one read transaction held across them.

        After each step the process's other greenlets run (:func:`pause`), so
        a long read (a count of a large range) never holds the hub for more
        than a step, and the result is still of one snapshot. The
        transaction is held as a backup's snapshot is: a resize of the map in
        this process ends it (the remap ends every transaction), and then
        the operation starts again; it writes nothing, so that is safe.
        """
        failure: lmdb.Error
        for attempt in range(ATTEMPTS):
            resizes = self._resizes
            held = _StepRead()
            self._step_reads.add(held)
            try:
                return self._run_steps(held, op, args)
            except _Interrupted:
                continue
            except lmdb.Error as exc:
                failure = exc
            finally:
                self._step_reads.discard(held)
                held.interrupt()
            self._recover(family, failure, attempt, resizes)
        raise family.error(f"{family.what}: the map was resized too many times in a row")

    def _run_steps(self, held: _StepRead, op: Callable[..., Generator[None, None, T]], args: tuple[Any, ...]) -> T:
        """The steps of ``op`` in ``held``'s transaction, a pause after each; _Interrupted if the transaction ended first."""
        guard = self._mode.guard
        with guard():
            # No local names the transaction: this frame waits in pause() between steps, and a
            # forked child's env.close() would abort a transaction it still refers to (see _StepRead).
            held.txn = self._begin()
            raw = held.txn.get(STATE_KEY)
            view = self._view
            if raw != view.raw:
                view = self._adopt(raw)
            steps = held.steps = op(held.txn, view, *args)
        try:
            while True:
                with guard():
                    if held.txn is None:
                        raise _Interrupted
                    try:
                        next(steps)
                    except StopIteration as done:
                        result: T = done.value
                        return result
                pause()
        finally:
            steps.close()

    def _write_unchecked(self, family: Family, op: Callable[..., T], *args: Any) -> T:
        """As :meth:`_write`, for the steps of a restore or rebuild, which check the state themselves; they add data."""
        return self._run(family, True, False, op, args, True)

    def _write_freeing(self, family: Family, op: Callable[..., T], *args: Any) -> T:
        """As :meth:`_write_unchecked`, for steps that free data (ending a restore): they may use the reserve."""
        return self._run(family, True, False, op, args, False)

    def _run(
        self, family: Family, write: bool, checked: bool, op: Callable[..., T], args: tuple[Any, ...], adds: bool = False
    ) -> T:
        """Run ``op`` in one transaction, retrying after map growth or adoption.

        A step that writes the state record (a clear, a rebuild, a restore)
        leaves its view adopted, as the fast paths will compare with it.

        When the map is at its final size (``_at_limit``), a write that
        ``adds`` data is refused with DiskStoreFullError if, after it, the
        pages in use would exceed the map less its reserve (and it grew
        them): the reserve stays free for deletes, clear and the end of a
        restore, which never need to grow the map to succeed.

        With a quota (``max_keys``, ``max_bytes``), a ``checked`` write that
        ``adds`` data (every such write of a quota handle comes here: its
        view's ``fillable`` keeps it off the fast paths) is refused with
        QuotaExceededError, in its own transaction, which is aborted, if it
        grew the live entries past ``max_keys`` or the pages of their
        database past ``max_bytes`` (see :meth:`_check_quota`).
        While keys expire, the measured run first removes up to
        ``QUOTA_PURGE`` expired entries in the same transaction, so a write
        is refused only if the store is past its quota without them.
        """
        failure: lmdb.Error | None
        measure_first = False  # a quota write measures before its step only after a step ended past the quota
        for attempt in range(ATTEMPTS):
            resizes = self._resizes
            guard = write and adds and self._at_limit
            quota = checked and adds and self._quota
            lock = self._mode.lock
            if lock is not None:
                lock.acquire()
            try:
                try:
                    txn = self._begin(None, None, True) if write else self._begin()
                except lmdb.Error as exc:
                    failure = exc
                else:
                    try:
                        raw = txn.get(STATE_KEY)
                        view = self._view
                        if checked:
                            if raw != view.writable:
                                view = self._check_writable(txn, raw)
                        elif raw != view.raw:
                            view = self._adopt(raw)
                        before = self._pages_in_use(txn) if guard else 0
                        if quota and measure_first and view.expiring:
                            # Past the quota: expired entries go first (a bounded number), then it is checked again.
                            expiry.purge(txn, view, self.clock(), expiry.QUOTA_PURGE)
                        counted = txn.stat(view.data) if quota and measure_first else None
                        result = op(txn, view, *args)
                        if quota and self._past_quota(txn, view, counted):
                            # Past the quota after the step, and unknown whether the step grew it (a store
                            # opened with a quota below its data): run it again, measured before and after.
                            measure_first = True
                            continue
                        if guard:
                            after = self._pages_in_use(txn)
                            if after > before and after > growth.fill_limit_pages(self._map_size):
                                raise _NoRoom
                        if write:
                            written = txn.get(STATE_KEY)
                            if written != raw:  # the step changed the state: it is this process's view at once
                                self._adopt(written)
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

    def _past_quota(self, txn: Txn, view: View, before: StatDict | None) -> bool:
        """After a write's step, in its transaction: QuotaExceededError if it took the entries past the quota.

        Keys are the entries; bytes are the pages of the entries' database
        times the page size (what ``stats()["bytes"]`` shows). A step that
        did not grow a measure is never refused by it (an overwrite at the
        limit, a claim), so a store opened with a quota below its data still
        takes every write that does not add to it. ``before`` is the entries'
        database's ``stat`` before the step; None on a first try (one
        ``stat``, about 2.5 us, saved on every write within the quota): then a
        step that ends past the quota answers True, and the caller aborts it
        and runs it again with ``before`` measured. False: within the quota.
        """
        after = txn.stat(view.data)
        max_keys = self.max_keys
        max_bytes = self.max_bytes
        keys_over = max_keys is not None and after["entries"] > max_keys
        pages = data_pages(after)
        bytes_over = max_bytes is not None and pages * PAGE_SIZE > max_bytes
        if not (keys_over or bytes_over):
            return False
        if before is None:
            return True
        if keys_over and after["entries"] > before["entries"]:
            raise QuotaExceededError(quota_message("max_keys", max_keys))  # type: ignore[arg-type]
        if bytes_over and pages > data_pages(before):
            raise QuotaExceededError(quota_message("max_bytes", max_bytes))  # type: ignore[arg-type]
        return False

    def _pages_in_use(self, txn: Txn) -> int:
        """Pages of every database of the store as this transaction sees them (free pages excluded)."""
        used = 0
        for db in self._all_dbs:
            stat = txn.stat(db)
            used += stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
        return used

    def _used_bytes(self, family: Family) -> int:
        """The bytes of the pages in use, in one read transaction."""
        return self._read(family, self._used_bytes_in)

    def _used_bytes_in(self, txn: Txn, _view: View) -> int:
        return self._pages_in_use(txn) * PAGE_SIZE

    def _reserve_bytes(self) -> int:
        return growth.reserve_bytes(self._map_size)

    def _grow_into_reserve(self, family: Family, resizes: int) -> None:
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

    def _recover(self, family: Family, exc: lmdb.Error, attempt: int, resizes: int) -> None:
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
            return env.reader_check()
        except lmdb.Error:
            return 0  # the operation's own error, if any, follows

    def _failed_for_space(self, exc: lmdb.Error) -> bool:
        """Whether ``exc`` is an I/O error of a disk that is full.

        LMDB reports a short ``pwrite`` at commit (``writemap=False``) as EIO,
        whatever its cause; when the store's filesystem has less free space
        than the map's reserve, the cause was the lack of space.
        """
        if type(exc) is not lmdb.Error or os.strerror(errno.EIO) not in str(exc):
            return False
        return growth.disk_short_of_reserve(self._spec.path, self._map_size)

    # -- OS threads ----------------------------------------------------------------------

    def _enter_thread_mode(self) -> None:
        """From now on every transaction of this backend holds the mode's lock, so resizes can exclude them.

        ``set_mapsize`` must not run while another OS thread of the process is
        inside a transaction (py-lmdb then fails those with EINVAL, or hangs).
        Greenlets share one thread and never need this. It starts at the
        first resize that finds other threads in the process: the inlined
        fast paths, which take no lock, give way to their locked forms.
        """
        self._mode = ThreadMode()
        self._inline = self._mode.inline

    # -- growth --------------------------------------------------------------------------

    def _grow_to(self, family: Family, at_least: int) -> None:
        """Grow the map to ``at_least`` bytes now, all or nothing (DiskStoreFullError)."""
        self._resize(family, True, self._resizes, at_least)

    def _resize(self, family: Family, grow: bool, resizes: int, at_least: int = 0) -> None:
        """Adopt the size another process grew the map to, or grow it (doubling, or to ``at_least``).

        No transaction of this greenlet is open. ``set_mapsize`` ends every
        transaction of the process, so a running snapshot is interrupted first.
        """
        side = self._side
        spec = self._spec
        with side.guard:
            env = self._env
            if env is None or self._resizes != resizes:
                return  # closed, or another thread resized since the attempt began: retry
            if self._mode.inline and len(sys._current_frames()) > 1:
                self._enter_thread_mode()
                growth.quiesce(env)
            try:
                with self._mode.guard(), side.exclusive(RESIZE_LOCK):
                    agreed = side.agreed_size()
                    target = max(agreed, growth.file_size(spec))
                    clamped = False
                    if target > self._map_size:
                        # Another process grew the map; its blocks are allocated unless it ran an
                        # older version (then this fills the holes, or refuses rather than SIGBUS).
                        growth.reserve_space(spec.path, target, target if spec.writemap else self._map_size)
                    elif grow:
                        try:
                            wanted, clamped = growth.next_map_size(spec, self._map_size, at_least)
                            # A growth asked for ahead of need is all or nothing.
                            target = growth.reserve_space(
                                spec.path, wanted, wanted if at_least else self._map_size + PAGE_SIZE
                            )
                            clamped = clamped or target < wanted
                        except DiskStoreFullError:
                            if at_least:
                                raise
                            # The disk filled up since the last growth: take the reserve the side
                            # file holds, so that the full map still has room for deletes.
                            cap = spec.max_map_size
                            if (cap is not None and self._map_size >= cap) or not side.release_reserve():
                                self._set_at_limit(True)
                                raise
                            target = growth.reserve_space(
                                spec.path, self._map_size + SPARE_BYTES, self._map_size + PAGE_SIZE
                            )
                            if cap is not None:
                                target = min(target, cap)
                            clamped = True
                    elif spec.writemap:
                        target = self._map_size
                    else:
                        target = 0  # the size LMDB's meta page records, or the data's if larger
                    self._interrupt_snapshot()
                    growth.set_mapsize(env, target)
                    self._map_size = env.info()["map_size"]
                    self._resizes += 1
                    if self._map_size > agreed:
                        side.agree(self._map_size)
                    self._set_at_limit(growth.at_final_size(spec, self._map_size, clamped))
                    if not self._at_limit:
                        side.reserve()  # the disk has room again: hold the reserve again
            except lmdb.Error as exc:
                # A failed remap leaves the environment unusable: the next operation reopens it.
                self._discard_env()
                if isinstance(exc, lmdb.MemoryError):
                    raise DiskStoreFullError(f"the disk store's map cannot grow: {exc}") from exc
                raise map_lmdb_error(exc, family) from exc
            except OSError as exc:
                raise family.error(f"{family.what}: resizing the map failed: {os_error(exc)}") from exc

    def _discard_env(self) -> None:
        self._interrupt_snapshot()
        try:
            self._close_env()
        except lmdb.Error:
            self._env = None
            self._begin = self._lazy_begin
            self._view = CLOSED_VIEW
            self._verified_txn = -1

    def _interrupt_snapshot(self) -> None:
        if self._snapshot is not None:
            self._snapshot.interrupt()
        for held in self._step_reads:
            held.interrupt()

    # -- lifecycle -------------------------------------------------------------------------

    def _close_engine(self) -> bool:
        """Close the snapshot, the environment and the side file; False if already closed."""
        if self._closed:
            return False
        self._closed = True
        snapshot = self._snapshot
        if snapshot is not None:
            snapshot.close()
        for held in list(self._step_reads):
            held.interrupt()
        with self._open_lock:
            self._close_env()
        forks.forget(self)
        self._side.release()
        return True


def _generation(
    env: lmdb.Environment,
    txn: Txn,
    names: tuple[bytes, bytes, bytes],
    expiry_names: tuple[bytes, bytes],
    ranks_name: bytes,
    create: bool,
) -> Generation:
    """One generation's databases; its expiries' two and its ranks are created when missing (a store made before them)."""
    data, slots, slotof = (env.open_db(name, txn=txn, create=create) for name in names)
    expires = env.open_db(expiry_names[0], txn=txn)
    expiry_ends = env.open_db(expiry_names[1], txn=txn, dupsort=True)
    ranks = env.open_db(ranks_name, txn=txn)
    return data, slots, slotof, expires, expiry_ends, ranks


ORPHANED_RANKING: Final = BUILDING + b"0.ranks"
"""The index status of a store opened with a key index but no rank index: a build nobody runs (pid 0)."""


def _rank_old_store(txn: Txn, dbs: tuple[Generation, ...]) -> None:
    """Give a store made before the rank index (format 1) one: its key index is emptied and marked as an orphaned build.

    Writers keep it up from then on (slots, slot of and ranks together), and
    the next ``random_key`` or ``count`` that would walk resumes the build in
    short slices (``DiskBackend._resume_orphaned_rebuild``), as after a
    rebuild whose process was killed. Without a key index, nothing to do.
    """
    state = State.decode(txn.get(STATE_KEY))
    if not state.maintained or state.restorer:
        return
    _, slots, slotof, _, _, _ = dbs[state.generation]
    for db in (slots, slotof):
        txn.drop(db, delete=False)
    put_state(txn, state.replace(index=ORPHANED_RANKING))
