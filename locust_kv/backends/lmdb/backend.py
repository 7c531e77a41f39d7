"""The disk backend: one LMDB environment shared by every process on the host.

The store is one LMDB file (``subdir=False``) with its lock file beside it
(``<path>-lock``) and a small side file of locust_kv's own (``<path>-kvlock``).
Every operation is one LMDB transaction, so it is atomic with respect to every
greenlet, thread and process that opens the same path: LMDB lets one writer at
a time commit, across processes, and readers see a snapshot without waiting.

:class:`DiskBackend` is the :class:`~.engine.Engine` (environment,
transactions, growth, thread mode) with the operations wired to it. Where
each concern lives:

* :mod:`.layout`: the file layout, the state record and its view;
* :mod:`.spec`: the options, the path, ``configure``;
* :mod:`.errors`: LMDB errors to catalogued errors;
* :mod:`.locks`: the side file's cross-process locks;
* :mod:`.forks`: what a forked child forgets;
* :mod:`.engine` and :mod:`.growth`: transactions, map growth;
* :mod:`.ops`, :mod:`.claims`, :mod:`.leases`, :mod:`.ranges`: the operations, as steps of one transaction;
* :mod:`.index` and :mod:`.sampling`: the key index, random keys;
* :mod:`.generations`: backup and restore;
* :mod:`.expiry`: expiring keys (their records, the writes that see an expired entry as absent, purging).

Greenlets. No transaction ever spans a greenlet switch, except the read
transaction of a running backup (readers never block anyone). Long work
(rebuilding the index, filling a restore, sampling without an index,
deleting a prefix) runs in transactions of a few milliseconds with
:func:`~locust_kv._cooperative.pause` between them. ``clear()`` is one short
transaction: LMDB frees a database's pages by walking only its branch pages.

Fast paths. The single-key operations inline the common case: one
transaction, and the state is the one this process last saw. Anything else
(first use, another state, a full or resized map, a refused write, thread
mode) goes through ``_read`` or ``_write``, which run the same step function
again from the start; calling those directly costs about 350 ns more per
operation. The inlined paths share one shape per kind (read, write);
``tests/test_disk_fast_paths.py`` compares their syntax trees, so that a fix
in one cannot miss the others.

This module is a little over 500 lines because those copies are written out
(a call through a shared helper would cost each operation a Python call);
everything else here is a line or two of wiring per operation.
"""

from __future__ import annotations

import os
import secrets
from random import random
from time import time as _time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

import lmdb

from ..._cooperative import pause
from ...errors import KVError
from ..base import Backend, BackupReader, Batch, ClaimRecord, wall_clock_ms
from . import claims, expiry, generations, ranges, sampling
from .engine import Engine
from .errors import DELETE, EXISTS, INDEX, READ, REBUILD, SCAN, SIZE, WRITE
from .index import WALK, random_slot, rebuild_slice, start_rebuild, take_over_rebuild
from .layout import BUILDING, MARKER_PREFIX, PAGE_SIZE, STATE_KEY, data_pages
from .ops import (
    clear_counted,
    clear_in,
    compare_and_delete_detailed,
    compare_and_delete_in,
    compare_and_swap_detailed,
    compare_and_swap_in,
    count_in,
    delete_in,
    delete_many,
    delete_range_slice,
    get_in,
    get_many,
    get_marker,
    get_or_set_in,
    increment_in,
    pop_random,
    put_marker,
    scan_in,
    set_in,
    set_many,
    size_steps,
    swap_in,
)
from .sampling import RETRY
from .spec import SCOPE

if TYPE_CHECKING:
    from .layout import Txn, View
    from .spec import DiskSpec

__all__ = ["DiskBackend"]



READ_FIRST_SKIP: Final = 15
"""After a get_or_set miss, the calls that go straight to the write transaction (see get_or_set)."""

EXPIRED_RETRIES: Final = 16
"""Transactions of random draws a random_key makes, while keys expire, before it walks the live keys instead
(the draws keep finding expired keys only when nearly all of a large range is expired)."""

class DiskBackend(Engine, Backend):
    """A store in an LMDB file, shared by every process that opens its path. See the module docstring."""

    kind = "disk"
    scope = SCOPE

    def __init__(self, spec: DiskSpec) -> None:
        Engine.__init__(self, spec)
        self._read_first_skip = 0
        """get_or_set calls left that skip the read-first try (see get_or_set)."""

    # -- single keys: the inlined fast paths (reads) -------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        if self._inline:
            try:
                txn = self._begin()
                try:
                    view = self._view
                    if txn.id() == self._verified_txn or self._verify(txn, view):
                        value = txn.get(key, None, view.data)
                        if value is None or not view.expiring:
                            return value
                        now = _time() * 1000 if self.clock is wall_clock_ms else self.clock()
                        if now < view.floor:  # nothing has expired yet
                            return value
                        end = txn.get(key, None, view.expires)
                        return value if end is None or int.from_bytes(end, "big") > now else None
                finally:
                    txn.abort()
            except lmdb.Error:
                pass
        return self._read(READ, get_in, key, self.clock)

    def exists(self, key: bytes) -> bool:
        if self._inline:
            try:
                txn = self._begin()
                try:
                    view = self._view
                    if txn.id() == self._verified_txn or self._verify(txn, view):
                        value = txn.get(key, None, view.data)
                        if value is None or not view.expiring:
                            return value is not None
                        now = _time() * 1000 if self.clock is wall_clock_ms else self.clock()
                        if now < view.floor:  # nothing has expired yet
                            return True
                        end = txn.get(key, None, view.expires)
                        return end is None or int.from_bytes(end, "big") > now
                finally:
                    txn.abort()
            except lmdb.Error:
                pass
        return self._read(EXISTS, get_in, key, self.clock) is not None

    def size(self) -> int:
        if self._inline:
            try:
                txn = self._begin()
                try:
                    view = self._view
                    if (txn.id() == self._verified_txn or self._verify(txn, view)) and (
                        not view.expiring
                        or (_time() * 1000 if self.clock is wall_clock_ms else self.clock()) < view.floor
                    ):
                        return txn.stat(view.data)["entries"]
                finally:
                    txn.abort()
            except lmdb.Error:
                pass
        # While keys expire: the entries less the expired ones not purged yet, O(those), in steps.
        size: int = self._read_in_steps(SIZE, size_steps, self.clock)
        return size

    # -- single keys: the inlined fast paths (writes) ------------------------------------------

    def set(self, key: bytes, value: bytes, ttl_ms: int | None = None) -> None:
        if self._inline:
            try:
                txn = self._begin(None, None, True)
            except lmdb.Error:
                pass
            else:
                try:
                    view = self._view
                    if txn.get(STATE_KEY) == view.fillable:
                        set_in(txn, view, key, value, ttl_ms, self.clock)
                        txn.commit()
                        return
                except lmdb.Error:
                    pass
                finally:
                    txn.abort()  # after a commit: does nothing
        self._write(WRITE, set_in, key, value, ttl_ms, self.clock)

    def delete(self, key: bytes) -> bool:
        if self._inline:
            try:
                txn = self._begin(None, None, True)
            except lmdb.Error:
                pass
            else:
                try:
                    view = self._view
                    if txn.get(STATE_KEY) == view.writable:
                        result = delete_in(txn, view, key, self.clock)
                        txn.commit()
                        return result
                except lmdb.Error:
                    pass
                finally:
                    txn.abort()  # after a commit: does nothing
        return self._write(DELETE, delete_in, key, self.clock)

    def increment_by(self, key: bytes, delta: int, ttl_ms: int | None = None) -> int:
        if self._inline:
            try:
                txn = self._begin(None, None, True)
            except lmdb.Error:
                pass
            else:
                try:
                    view = self._view
                    if txn.get(STATE_KEY) == view.fillable:
                        result = increment_in(txn, view, key, delta, ttl_ms, self.clock)
                        txn.commit()
                        return result
                except lmdb.Error:
                    pass
                finally:
                    txn.abort()  # after a commit: does nothing
        return self._write(WRITE, increment_in, key, delta, ttl_ms, self.clock)

    def get_or_set(self, key: bytes, value: bytes, ttl_ms: int | None = None) -> tuple[bytes, bool]:
        if self._inline:
            # Read first: a hit writes nothing, so a read transaction answers it, off LMDB's writer lock.
            # Gated on ``writable``, as the write would be: during a restore a hit goes the write's way.
            # A miss takes the write path below, whose step looks the key up again; after a miss the
            # next READ_FIRST_SKIP calls go straight to the write, so a run of misses (ids handed out
            # once) pays the extra read once in READ_FIRST_SKIP + 1 calls, and a run of hits never.
            if self._read_first_skip:
                self._read_first_skip -= 1
            else:
                try:
                    txn = self._begin()
                    try:
                        view = self._view
                        if view.writable is view.raw and (txn.id() == self._verified_txn or self._verify(txn, view)):
                            current = txn.get(key, None, view.data)
                            if current is not None and (
                                not view.expiring
                                or (now := _time() * 1000 if self.clock is wall_clock_ms else self.clock()) < view.floor
                                or (end := txn.get(key, None, view.expires)) is None
                                or int.from_bytes(end, "big") > now
                            ):
                                return current, True
                    finally:
                        txn.abort()
                except lmdb.Error:
                    pass
                self._read_first_skip = READ_FIRST_SKIP
            try:
                txn = self._begin(None, None, True)
            except lmdb.Error:
                pass
            else:
                try:
                    view = self._view
                    if txn.get(STATE_KEY) == view.fillable:
                        result = get_or_set_in(txn, view, key, value, ttl_ms, self.clock)
                        txn.commit()
                        return result
                except lmdb.Error:
                    pass
                finally:
                    txn.abort()  # after a commit: does nothing
        return self._write(WRITE, get_or_set_in, key, value, ttl_ms, self.clock)

    def swap(self, key: bytes, value: bytes, ttl_ms: int | None = None) -> bytes | None:
        if self._inline:
            try:
                txn = self._begin(None, None, True)
            except lmdb.Error:
                pass
            else:
                try:
                    view = self._view
                    if txn.get(STATE_KEY) == view.fillable:
                        result = swap_in(txn, view, key, value, ttl_ms, self.clock)
                        txn.commit()
                        return result
                except lmdb.Error:
                    pass
                finally:
                    txn.abort()  # after a commit: does nothing
        return self._write(WRITE, swap_in, key, value, ttl_ms, self.clock)

    def compare_and_swap(self, key: bytes, old: bytes | None, new: bytes, ttl_ms: int | None = None) -> bool:
        if self._inline:
            try:
                txn = self._begin(None, None, True)
            except lmdb.Error:
                pass
            else:
                try:
                    view = self._view
                    if txn.get(STATE_KEY) == view.fillable:
                        result = compare_and_swap_in(txn, view, key, old, new, ttl_ms, self.clock)
                        txn.commit()
                        return result
                except lmdb.Error:
                    pass
                finally:
                    txn.abort()  # after a commit: does nothing
        return self._write(WRITE, compare_and_swap_in, key, old, new, ttl_ms, self.clock)

    def compare_and_delete(self, key: bytes, old: bytes) -> bool:
        if self._inline:
            try:
                txn = self._begin(None, None, True)
            except lmdb.Error:
                pass
            else:
                try:
                    view = self._view
                    if txn.get(STATE_KEY) == view.writable:
                        result = compare_and_delete_in(txn, view, key, old, self.clock)
                        txn.commit()
                        return result
                except lmdb.Error:
                    pass
                finally:
                    txn.abort()  # after a commit: does nothing
        return self._write(DELETE, compare_and_delete_in, key, old, self.clock)

    # -- random keys and the index ---------------------------------------------------------------

    def random_key(self, prefix: bytes) -> bytes | None:
        """A uniform key among those with ``prefix``; the costs are in :mod:`.sampling`.

        Without a prefix, with the index, inlined like ``get``: two index reads.
        """
        if self._inline and not prefix:
            try:
                txn = self._begin()
                try:
                    view = self._view
                    if (txn.id() == self._verified_txn or self._verify(txn, view)) and view.indexed and not view.expiring:
                        found = random_slot(txn, view)
                        if found is not WALK:
                            return found
                finally:
                    txn.abort()
            except lmdb.Error:
                pass
        return self._random_key_slow(prefix)

    def _random_key_slow(self, prefix: bytes) -> bytes | None:
        self._settle()
        clock = self.clock
        found = self._read(INDEX, sampling.random_probe, prefix, sampling.REJECTION_TRIES, clock)
        if found is WALK and self._resume_orphaned_rebuild():
            found = self._read(INDEX, sampling.random_probe, prefix, sampling.REJECTION_TRIES, clock)
        retries = 0
        while found is RETRY:  # a range of over WINDOW keys: more slots, a transaction of a few ms each
            retries += 1
            if retries > EXPIRED_RETRIES and self._view.expiring:
                found = WALK  # the draws keep finding expired keys: walk the live ones (exact, uniform)
                break
            pause()
            found = self._read(INDEX, sampling.random_probe, prefix, sampling.CHUNK_TRIES, clock)
        if found is WALK:
            return self._random_walk(prefix)
        return found

    def _random_walk(self, prefix: bytes) -> bytes | None:
        """Sample by reading every matching key, a chunk per transaction, pausing between chunks (no index only).

        One pass of weighted reservoir sampling: each chunk's keys replace the
        choice with probability (chunk size / keys seen), so the result is
        uniform over the keys read, in O(1) memory.
        """
        chosen: bytes | None = None
        seen = 0
        after: bytes | None = None
        while True:
            chunk, last, done = self._read(INDEX, sampling.walk_chunk, prefix, after, self.clock)
            if chunk:
                seen += len(chunk)
                if random() * seen < len(chunk):
                    chosen = chunk[int(random() * len(chunk))]
            if done:
                return chosen
            after = last
            pause()

    def _resume_orphaned_rebuild(self) -> bool:
        """Finish a rebuild that nobody runs any more; whether one was finished.

        A rebuild whose process was killed, or whose greenlet was killed
        (GreenletExit at a pause between its transactions), leaves the index
        marked ``b<owner>.<token>``: writers keep it up, but it is never
        marked valid, and ``random_key()`` and a ranged ``count`` walk every
        key until a rebuild. A rebuild is running when some process holds the
        shared rebuild lock on the side file (the kernel drops it with its
        process) or one runs in this process. Checked only by those two, and
        only while the index is marked as being built: one ``fcntl`` call
        beside milliseconds of reading.
        The partial index is consistent (every indexed key has its slot), so
        the build resumes: it indexes the keys still missing.
        """
        state = self._view.state
        if state is None or not state.index.startswith(BUILDING) or self._side.rebuild_running():
            return False
        self._rebuild(resume=state.index)
        return True

    def rebuild_key_list(self) -> None:
        """Build the index from the data, a slice per transaction; writers keep it up meanwhile.

        The index is emptied and marked as being built (``b<pid>.<token>``);
        from then on every writer maintains it, and the builder adds each key
        it finds unindexed. When the builder has seen every key the index is
        marked valid. A clear, a restore or another rebuild replaces the
        token, and this builder stops: the index they leave is complete.
        While it runs, this process holds the shared rebuild lock of the side
        file; a build left behind by a killed process or greenlet is resumed
        by the next ``random_key()`` or ranged ``count`` (see :meth:`_resume_orphaned_rebuild`).
        """
        self._rebuild(resume=None)

    def _rebuild(self, resume: bytes | None) -> None:
        """Run a rebuild: a new one, or, with ``resume``, take over the orphaned build marked ``resume``."""
        owner = os.getpid()
        token = BUILDING + b"%d." % owner + secrets.token_hex(4).encode()
        side = self._side
        side.begin_rebuild()
        try:
            generation: int | None
            if resume is None:
                generation = self._write(REBUILD, start_rebuild, token)
            else:
                generation = self._write(REBUILD, take_over_rebuild, token, resume)
                if generation is None:
                    return  # another process took it over first, or the state moved on
            after: bytes | None = None
            while True:
                progress = self._write_unchecked(REBUILD, rebuild_slice, token, owner, generation, after)
                if progress is None:
                    return
                after = progress
                pause()  # GreenletExit lands here, between transactions: nothing to undo
        finally:
            # Never yields. A killed greenlet's build stays marked, with no live owner:
            # the next random_key() that would walk resumes it.
            if os.getpid() == owner:
                side.end_rebuild()

    # -- whole-store operations ------------------------------------------------------------------

    def clear(self) -> None:
        self._reclaim_stale_readers()  # the dropped pages are reusable only past every reader
        self._write(DELETE, clear_in, self._track_keys)

    def scan(self, low: bytes, high: bytes | None, offset: int, limit: int) -> tuple[list[tuple[bytes, bytes]], bool]:
        """One read transaction. An offset: with the key index and no expired entry stored, two lookups of
        the rank index, O(log n); otherwise a cursor walk, O(offset), pausing as :meth:`count` does.

        While keys expire, each key read costs one lookup of its expiry (none while none is expired);
        many expired entries are purged first (:meth:`_settle`).
        """
        self._settle()
        if offset > 0:
            rows: tuple[list[tuple[bytes, bytes]], bool] = self._read_in_steps(
                SCAN, ranges.scan_after_steps, low, high, offset, limit, scan_in, self.clock
            )
            return rows
        return self._read(SCAN, scan_in, low, high, limit, self.clock)

    def begin_backup(self, allow_concurrent_writes: bool) -> BackupReader:
        """A point-in-time reader in both modes: one LMDB read transaction; writers go on.

        Many expired entries are purged first (:meth:`_settle`): a batch skips them one lookup at a time.
        """
        self._settle()
        return generations.begin_backup(self)

    def replace_all(self, batches: Iterator[Batch]) -> int:
        """Fill the other generation in short transactions, then flip the state in one (see :mod:`.generations`)."""
        return generations.replace_all(self, batches)

    def stats(self) -> dict[str, int]:
        """One read transaction: O(1) for keys and bytes, O(log n + ended leases) for the two lease counts."""
        self._settle()
        return self._read(SIZE, self._stats_in)

    def _stats_in(self, txn: Txn, view: View) -> dict[str, int]:
        # bytes: the pages of the live entries' database, the measure of max_bytes.
        return claims.stats(txn, view, self.clock, data_pages(txn.stat(view.data)), PAGE_SIZE)

    # -- claims (leases), batches and prefixes ---------------------------------------------------

    def claim_keys(self, keys: list[bytes], ttl_ms: int, owner: bytes) -> list[ClaimRecord | None]:
        """One lookup of the key and one of its lease per key, one write per lease, in one transaction."""
        return self._write(WRITE, claims.claim_keys, keys, ttl_ms, owner, self.clock)

    def claim_random(self, prefix: bytes, count: int, ttl_ms: int, owner: bytes) -> list[ClaimRecord]:
        """One transaction; drawn as :mod:`~locust_kv.backends.lmdb.sampling` describes.

        Random index slots checked against their lease (expected k/c draws
        per key for c claimable of k keys); when they keep missing, an exact
        read of the prefix range and its lease keys, O(k + leases). Without a
        prefix, an exhausted pool costs O(log n) and a nearly exhausted one
        about 4n/c draws; with a prefix, a nearly exhausted pool pays the
        exact read on every call.
        """
        self._settle()
        return self._write(WRITE, claims.claim_random, prefix, count, ttl_ms, owner, self.clock)

    def release_claims(self, refs: list[tuple[bytes, int]]) -> list[bool]:
        # A release is a completion that keeps the key.
        return self._write(DELETE, claims.complete_claims, refs, False, self.clock, delete_in)

    def complete_claims(self, refs: list[tuple[bytes, int]], delete: bool) -> list[bool]:
        return self._write(DELETE, claims.complete_claims, refs, delete, self.clock, delete_in)

    def renew_claims(self, refs: list[tuple[bytes, int]], ttl_ms: int) -> list[int | None]:
        return self._write(WRITE, claims.renew_claims, refs, ttl_ms, self.clock)

    def read_lease(self, key: bytes) -> tuple[int, int, bytes] | None:
        """One read transaction, one lookup."""
        return self._read(READ, claims.read_lease, key, self.clock)

    def allocation_stats(self, prefix: bytes) -> tuple[int, int, int, int]:
        """One read transaction: O(log n + ended leases) without a prefix, O(k + leases of the range) with one.

        Done in steps with pauses between them, as :meth:`count` is.
        """
        self._settle()
        return self._read_in_steps(SIZE, claims.allocation_stats, prefix, self.clock)

    def compare_and_swap_detailed(
        self, key: bytes, old: bytes | None, new: bytes, ttl_ms: int | None = None
    ) -> tuple[bool, bytes | None]:
        return self._write(WRITE, compare_and_swap_detailed, key, old, new, ttl_ms, self.clock)

    def compare_and_delete_detailed(self, key: bytes, old: bytes) -> tuple[bool, bytes | None]:
        return self._write(DELETE, compare_and_delete_detailed, key, old, self.clock)

    def count(self, low: bytes, high: bytes | None) -> int:
        """The number of keys in ``[low, high)``, of one snapshot.

        For the whole store, the database's entry count: O(1). Otherwise,
        with the key index, two ranks of the rank index, O(log n) (see
        :mod:`.ranks`); without it, a cursor walk of the range, O(k) for k
        keys in it (about 20 ms for 100,000), which pauses every 16,384 keys
        in the same read transaction (``_read_in_steps``), so other greenlets
        run. A key index left half built (its builder killed, or a store made
        before the rank index) is finished first, as ``random_key`` does.
        While keys expire, less the expired entries not purged yet that are
        in the range: a walk of every expired entry not purged yet, O(those)
        (writes and ``purge_expired`` keep them few).
        """
        self._settle()
        if low or high is not None:
            self._resume_orphaned_rebuild()
        return self._read_in_steps(SIZE, count_in, low, high, self.clock)

    def random_keys(self, prefix: bytes, count: int, unique: bool) -> list[bytes]:
        """In one read transaction; see :func:`~locust_kv.backends.lmdb.sampling.random_keys` for the costs."""
        self._settle()
        return self._read(INDEX, sampling.random_keys, prefix, count, unique, self.clock)

    def pop_random(self, prefix: bytes, count: int) -> list[tuple[bytes, bytes]]:
        """Chosen as :meth:`claim_random` chooses (same costs), removed in the same transaction."""
        self._settle()
        return self._write(DELETE, pop_random, prefix, count, self.clock)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        return self._read(READ, get_many, keys, self.clock)

    def set_many(self, items: list[tuple[bytes, bytes]], ttl_ms: int | None = None) -> None:
        """One write transaction: all or nothing (a full map: DiskStoreFullError, nothing written)."""
        self._write(WRITE, set_many, items, ttl_ms, self.clock)

    def delete_many(self, keys: list[bytes]) -> int:
        return self._write(DELETE, delete_many, keys, self.clock)

    def delete_prefix(self, prefix: bytes, limit: int) -> tuple[int, bool]:
        """Transactions of a few milliseconds each, with a pause between them.

        Without a prefix and a limit, one transaction drops every database
        as :meth:`clear` does (its index status included).
        """
        if not prefix and limit <= 0:
            self._reclaim_stale_readers()  # as clear does: the dropped pages are reusable only past every reader
            return self._write(DELETE, clear_counted, self._track_keys, self.clock), True
        removed = 0
        while True:
            step = limit - removed if limit > 0 else -1
            got, empty = self._write(DELETE, delete_range_slice, prefix, step, self.clock)
            removed += got
            if empty or 0 < limit <= removed:
                return removed, empty
            pause()

    def scan_keys(self, low: bytes, high: bytes | None, offset: int, limit: int) -> tuple[list[bytes], bool]:
        """As :meth:`scan`."""
        self._settle()
        if offset > 0:
            keys: tuple[list[bytes], bool] = self._read_in_steps(
                SCAN, ranges.scan_after_steps, low, high, offset, limit, ranges.scan_keys, self.clock
            )
            return keys
        return self._read(SCAN, ranges.scan_keys, low, high, limit, self.clock)

    def _settle(self) -> None:
        """Before an operation over a range: when many expired entries are still stored, purge them first.

        Scans, draws, claims of a range and statistics skip expired entries
        one lookup at a time, inside one transaction that cannot pause: a
        million of them would hold the hub for seconds. So when at least
        :data:`~.expiry.SETTLE_AT` are stored (a read of their deadline
        index, O(SETTLE_AT), and nothing at all while the clock is before the
        state's floor), they are purged first, in write transactions of
        :data:`~.expiry.SETTLE_STEP` with a pause between, as
        ``purge_expired`` does; the operation then finds few. Purging changes
        nothing any operation can see. When it cannot write (a restore refuses
        every writer; a file this process may only read), the operation goes
        on without it, skipping the expired entries as it reads.
        """
        view = self._view
        if not view.expiring or self.clock() < view.floor:
            return
        clock = self.clock
        while self._read(SIZE, expiry.expired_at_least, expiry.SETTLE_AT, clock) >= expiry.SETTLE_AT:
            try:
                self._write(DELETE, expiry.purge_expired, expiry.SETTLE_STEP, clock)
            except KVError:  # RestoreInProgressError, a write refused by the file system...: read as is
                return
            pause()

    # -- expiring keys (see :mod:`.expiry`) ------------------------------------------------------

    def expire(self, key: bytes, ttl_ms: int) -> bool:
        return self._write(WRITE, expiry.expire, key, ttl_ms, self.clock)

    def persist(self, key: bytes) -> bool:
        return self._write(WRITE, expiry.persist, key, self.clock)

    def expiry(self, key: bytes) -> tuple[bool, int | None]:
        """One read transaction, two lookups."""
        return self._read(READ, expiry.read_expiry, key, self.clock)

    def purge_expired(self, limit: int) -> int:
        """One write transaction removing the earliest ``limit`` expired entries (see :mod:`.expiry` for its cost)."""
        return self._write(DELETE, expiry.purge_expired, limit, self.clock)

    # -- markers: records of the main database, outside the generations ----------

    def read_marker(self, name: bytes) -> bytes | None:
        return self._read(READ, get_marker, MARKER_PREFIX + name)

    def write_marker(self, name: bytes, value: bytes) -> None:
        self._write_unchecked(WRITE, put_marker, MARKER_PREFIX + name, value)

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        self._close_engine()
