"""The two generations behind backup and restore.

Backup. A point-in-time reader in both modes: one LMDB read transaction of
its own (:class:`DiskBackupReader`), read batch by batch across greenlet
switches while writers go on. The engine holds it as its
:class:`~.engine.Snapshot`: a resize interrupts it (the remap ends every
transaction of the process), a fork detaches it. Its reads hold what every
transaction holds (the engine's transaction guard, given to it as a callable).

Restore. The other generation is filled in short transactions, then the
state record is flipped in one short transaction. Writers in every process
see the restore flag (the state's restorer) and fail fast; readers keep the
live generation until the flip. If the rows raise, the half-filled
generation is dropped and the live one was never touched. A restorer that
died leaves the flag; the next writer that finds the restore lock free drops
its generation (:meth:`~.engine.Engine._check_writable`).

Expiries live with their generation: a backup reads the expiries of its
snapshot's generation and leaves out the entries expired when each batch is
read; a restore skips the entries of a batch already expired when it
receives the batch, writes the others' expiries into the generation it
fills, and the flip sets the state's expiry flag when it loaded any.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from itertools import islice
from typing import TYPE_CHECKING, Final

import lmdb

from ..._cooperative import pause
from ...errors import (
    BackupInProgressError,
    DiskStoreFullError,
    DiskStoreIndexError,
    DiskStoreScanError,
    KVError,
    QuotaExceededError,
    RestoreInProgressError,
)
from ..base import Batch, BackupReader
from .errors import SCAN, WRITE, map_lmdb_error
from .layout import NONE, PAGE_SIZE, STATE_KEY, VALID, State, data_pages, put_state
from .locks import BACKUP_LOCK, RESTORE_LOCK
from .ranks import append_ranks, rank_add

if TYPE_CHECKING:
    from lmdb import _Database as Db

    from .engine import Engine
    from .layout import Txn, View

__all__ = ["BACKUP_ROOM", "RESTORE_ROWS", "DiskBackupReader", "begin_backup", "replace_all"]

BACKUP_ROOM: Final = 64 << 20
"""The least map a backup starts with (see :func:`make_room_for_backup`)."""

RESTORE_ROWS: Final = 1_000
"""Entries written per restore transaction: 2 to 4 ms with the key index (three appends a row),
which the hub waits for (2,000 took 8 ms, 13 at worst, against issue 14's 10 ms budget)."""


# ---------------------------------------------------------------------------
# Backup.


class DiskBackupReader(BackupReader):
    """Every entry of one LMDB snapshot, read batch by batch across greenlet switches.

    Only this object refers to the read transaction: no cursor or transaction
    lives in a local variable across a ``yield``, so that a forked child can
    drop it (:meth:`detach`).
    """

    point_in_time = True

    def __init__(
        self,
        txn: Txn,
        data: Db,
        guard: Callable[[], AbstractContextManager[object]],
        on_close: Callable[[DiskBackupReader], None],
        expires: Db | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self._txn: Txn | None = txn
        self._data = data
        self._expires = expires
        """The snapshot generation's expiries; None when its state says it holds none."""
        self._clock = clock
        self._guard = guard
        self._on_close = on_close
        self._why_stopped = ""
        self._closed = False

    def batches(self, batch_size: int) -> Iterator[Batch]:
        after: bytes | None = None
        while True:
            rows, last = self._batch(after, max(1, batch_size))
            if last is None:
                return
            if rows[0]:
                yield rows
            after = last

    def _batch(self, after: bytes | None, size: int) -> tuple[Batch, bytes | None]:
        """The live entries of the next ``size`` stored ones, with their expiries; the last key read (None: done)."""
        with self._guard():  # as every transaction of the store (see engine.TransactionMode)
            txn = self._txn
            if txn is None:
                raise DiskStoreScanError(self._why_stopped or "the backup reader is closed")
            try:
                cursor = txn.cursor(self._data)
                if not (cursor.first() if after is None else cursor.set_range(after + b"\x00")):
                    return ([], None), None
                rows = list(islice(cursor.iternext(), size))
                if not rows:
                    return ([], None), None
                last = rows[-1][0]
                expires = self._expires
                if expires is None or self._clock is None:
                    return (rows, None), last
                now = self._clock()
                get = txn.get
                kept: list[tuple[bytes, bytes]] = []
                ends: list[int] = []
                for row in rows:
                    raw = get(row[0], None, expires)
                    end = int.from_bytes(raw, "big") if raw is not None else 0
                    if raw is not None and end <= now:
                        continue  # expired when read: left out
                    kept.append(row)
                    ends.append(end)
                return (kept, ends if any(ends) else None), last
            except lmdb.Error as exc:
                raise map_lmdb_error(exc, SCAN) from exc

    def interrupt(self) -> None:
        """The map is about to be resized, which ends every transaction of the process."""
        txn, self._txn = self._txn, None
        if txn is not None:
            txn.abort()
            self._why_stopped = "the backup stopped: the store's map grew while it was read; retry the backup"

    def detach(self) -> None:
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
        self._on_close(self)


def begin_backup(engine: Engine) -> DiskBackupReader:
    """A point-in-time reader of the live generation; BackupInProgressError if one runs on this store."""
    side = engine._side
    if side.backup_owner is not None or not side.try_lock(BACKUP_LOCK):
        raise BackupInProgressError("another backup is in progress")
    side.backup_owner = engine
    try:
        engine._reclaim_stale_readers()  # e.g. the slot of a backup whose process was killed
        make_room_for_backup(engine)
        reader = engine._read(SCAN, _start_backup, engine)
    except BaseException:
        _end_backup(engine, None)
        raise
    engine._hold_snapshot(reader)
    return reader


def make_room_for_backup(engine: Engine) -> None:
    """Grow the map before a backup's snapshot is taken, so that writes during it rarely need a resize.

    Pages freed while the snapshot is read cannot be reused, so writers
    take new ones; and a resize ends the backup (it ends every
    transaction of the process). The map is made at least twice the
    pages in use and ``BACKUP_ROOM``, within ``max_map_size``, when that
    takes at most half the disk's free space (else it stays as it is).
    """
    used = engine._used_bytes(SCAN)
    want = max(2 * used, BACKUP_ROOM)
    spec = engine._spec
    if spec.max_map_size is not None:
        want = min(want, spec.max_map_size)
    vfs = os.statvfs(os.path.dirname(spec.path))
    # Only with room to spare on the disk: the backup file is often written beside the store.
    if want > engine._map_size and want - engine._map_size <= vfs.f_bavail * vfs.f_frsize // 2:
        try:
            engine._grow_to(SCAN, want)
        except DiskStoreFullError:
            pass


def _start_backup(txn: Txn, view: View, engine: Engine) -> DiskBackupReader:
    # The reader's own transaction, which outlives this one; its snapshot names its generation.
    snapshot = engine._begin_snapshot()
    try:
        state = State.decode(snapshot.get(STATE_KEY))
        side = engine._side
        if state.restorer and (side.restoring or side.held_elsewhere(RESTORE_LOCK)):
            raise RestoreInProgressError("a restore is in progress; retry when it completes")
        generation = view.generations[state.generation]
        return DiskBackupReader(
            snapshot,
            generation[0],
            engine._transaction_guard,
            lambda reader: _end_backup(engine, reader),
            generation[3] if state.expiring else None,
            lambda: engine.clock(),
        )
    except BaseException:
        snapshot.abort()
        raise


def _end_backup(engine: Engine, reader: DiskBackupReader | None) -> None:
    if reader is not None:
        engine._drop_snapshot(reader)
    side = engine._side
    if side.backup_owner is engine:
        side.backup_owner = None
        side.unlock(BACKUP_LOCK)
        side.close_if_unused()


# ---------------------------------------------------------------------------
# Restore.


def replace_all(engine: Engine, batches: Iterator[Batch]) -> int:
    """Fill the other generation in short transactions, then flip the state in one; the entries restored."""
    side = engine._side
    if side.backup_owner is not None or side.held_elsewhere(BACKUP_LOCK):
        raise BackupInProgressError("a backup is in progress; retry when it completes")
    if side.restoring or not side.try_lock(RESTORE_LOCK):
        raise RestoreInProgressError("a restore is in progress; retry when it completes")
    side.restoring = True
    owner = os.getpid()
    track_keys = engine._track_keys
    staging: int | None = None
    try:
        engine._reclaim_stale_readers()
        staging = engine._write_unchecked(WRITE, start_restore, owner)
        for entries, expiries in batches:
            pause()  # reading the batch was work too
            if expiries is not None:
                now = engine.clock()  # an entry already expired when its batch arrives is skipped
                kept = [(row, end) for row, end in zip(entries, expiries) if not 0 < end <= now]
                entries = [row for row, _ in kept]
                expiries = [end for _, end in kept]
            for start in range(0, len(entries), RESTORE_ROWS):
                rows = entries[start : start + RESTORE_ROWS]
                ends = expiries[start : start + RESTORE_ROWS] if expiries is not None else None
                engine._write_unchecked(WRITE, restore_rows, owner, staging, track_keys, rows, ends)
                pause()
        return engine._write_unchecked(WRITE, finish_restore, owner, staging, track_keys, engine.max_keys, engine.max_bytes)
    except BaseException:
        if staging is not None and os.getpid() == owner:
            try:
                engine._write_freeing(WRITE, abandon_restore, owner)
            except KVError:
                pass  # the flag stays; once the lock below is free, the next writer drops the generation
        raise
    finally:
        if os.getpid() == owner:
            side.restoring = False
            side.unlock(RESTORE_LOCK)
            side.close_if_unused()


def _drop_generation(txn: Txn, view: View, generation: int) -> None:
    # Frees the pages by walking branch pages only: milliseconds for a million keys.
    for db in view.generations[generation]:
        txn.drop(db, delete=False)


def _check_restorer(view: View, owner: int) -> State:
    state = view.state
    if state is None or state.restorer != owner or os.getpid() != owner:
        raise RestoreInProgressError("the restore lost its claim on the store (the process forked)")
    return state


def start_restore(txn: Txn, view: View, owner: int) -> int:
    state = view.state
    assert state is not None
    # This process holds the restore lock, so a restorer recorded here died; its generation goes too.
    staging = 1 - state.generation
    _drop_generation(txn, view, staging)
    put_state(txn, state.replace(restorer=owner))
    return staging


def restore_rows(
    txn: Txn, view: View, owner: int, staging: int, track_keys: bool, rows: list[tuple[bytes, bytes]],
    ends: list[int] | None = None,
) -> None:
    _check_restorer(view, owner)
    data, slots_db, slotof, expires, expiry_ends, ranks = view.generations[staging]
    if ends is not None:
        # The staging generation's expiry databases, written directly (the state's flag is set by the flip).
        for (key, _), end in zip(rows, ends):
            old = txn.replace(key, end.to_bytes(8, "big"), expires) if end else txn.pop(key, expires)
            if old is not None:  # a key given twice: its last expiry
                txn.delete(old, key, expiry_ends)
            if end:
                txn.put(end.to_bytes(8, "big"), key, True, True, False, expiry_ends)
    cursor = txn.cursor(data)
    ascending = (not cursor.last() or rows[0][0] > cursor.key()) and all(
        rows[i][0] < rows[i + 1][0] for i in range(len(rows) - 1)
    )
    if not track_keys:
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
        if not append_ranks(txn, ranks, [key for key, _ in rows], count):
            raise DiskStoreIndexError("the restore's rank index is damaged; nothing was restored")
        return
    for key, value in rows:
        if txn.replace(key, value, data) is None:
            slot = count.to_bytes(8, "big")
            txn.put(key, slot, True, True, False, slotof)
            slots.put(slot, key, False, True, True)
            count += 1
            if not rank_add(txn, slotof, ranks, key):
                raise DiskStoreIndexError("the restore's rank index is damaged; nothing was restored")


def finish_restore(
    txn: Txn, view: View, owner: int, staging: int, track_keys: bool, max_keys: int | None = None, max_bytes: int | None = None
) -> int:
    state = _check_restorer(view, owner)
    if max_keys is not None or max_bytes is not None:
        # The restoring handle's quota, on the loaded generation: refused, it is abandoned (the live data kept).
        loaded = txn.stat(view.generations[staging][0])
        if max_keys is not None and loaded["entries"] > max_keys:
            raise QuotaExceededError(f"the snapshot holds more entries than the store's max_keys={max_keys}; nothing was restored")
        if max_bytes is not None and data_pages(loaded) * PAGE_SIZE > max_bytes:
            raise QuotaExceededError(
                f"the snapshot's entries take more pages than the store's max_bytes={max_bytes}; nothing was restored"
            )
    _drop_generation(txn, view, state.generation)
    for db in (view.claims, view.ends):  # the leases were on the keys the flip replaces
        txn.drop(db, delete=False)
    ends = txn.cursor(view.generations[staging][4])
    expiring = ends.first()
    floor = int.from_bytes(ends.key(), "big") if expiring else 0
    put_state(txn, State(staging, VALID if track_keys else NONE, 0, expiring, floor))
    return txn.stat(view.generations[staging][0])["entries"]


def abandon_restore(txn: Txn, view: View, owner: int) -> None:
    state = view.state
    if state is None or state.restorer != owner:
        return
    _drop_generation(txn, view, 1 - state.generation)
    put_state(txn, state.replace(restorer=0))
