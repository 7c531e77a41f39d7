"""The memory backend: one process's store, in dicts.

Atomicity: every operation runs under one OS-level lock, so it is atomic with
respect to every greenlet and every thread of the process. The critical
sections never yield to gevent, so holding an OS lock cannot deadlock two
greenlets of the same thread. The data is private to the process: after a
fork each process has its own copy.

Index: the keys are also kept in a :class:`sortedcontainers.SortedList` for
ordered scans and O(log n) prefix sampling, and, with ``track_keys``, in a
dense list that makes ``random_key()`` without a prefix O(1).

Leases: a dict key -> ``(token, expires_ms, owner)`` beside the data, the
held keys kept sorted (so counts and exact uniform draws among the free keys
are O(log n)), and a token counter. Every operation that removes a key drops
its lease in the same critical section, so a lease always names an existing
key.

Expiring keys: an entry's expiry (absolute Unix ms of :attr:`clock`) is kept
in an :class:`~locust_kv.backends.memory_ttl.Expiries` beside the data (key ->
expiry in the values' shards, and ``(expiry, key)`` sorted by deadline), or
nothing at all (None) while no key has one, so that a store that never used
expiries pays one ``is None`` test per read. An expired entry is absent at
once for every operation, purged or not:

- ``get``, ``exists``, ``get_many``, ``expiry`` and ``read_lease`` read the
  clock, and look the key's expiry up only when some entry has expired (the
  earliest expiry is kept; ``get`` compares it with ``time.time()`` read
  inline), and say absent: a ``get`` where every key expires costs about
  50-80 ns more than one where none does (1.15x through ``KV.get``);
- every write to a key first removes that key's entry if it has expired (so
  the write finds it absent, its lease going with it), and then removes up to
  ``PURGE_STEP`` more of the earliest expired entries on its way;
- the operations over ranges (``count``, ``scan``, random draws, random
  claims and pops, ``allocation_stats``, ``stats``) first remove every
  expired entry, so that they run unchanged over live keys only (counts stay
  O(log n), draws uniform). When many are due at once (a million keys that
  expired together), they remove them :data:`_PURGE_SLICE` at a time, each
  step a critical section of a few ms with a pause after it, before the
  operation's own critical section: the hub never stalls, and the caller
  pays for the purge (O(expired) in all) once; ``size`` only subtracts the
  expired count (one bisection of the deadlines); ``delete_prefix`` removes
  expired entries with the others but counts only the live ones;
- ``purge_expired(limit)`` removes up to ``limit`` of them in one critical
  section (about 2 us an entry at a million keys); a write refused by a quota
  first removes up to :data:`_QUOTA_PURGE` and checks again.

Removing expired entries never changes what any reader sees, so it also runs
while a backup or a restore refuses writers.

This module is over 500 lines: one backend class, one short method per
operation of the interface, all under the same lock and over the same
dicts; the lease bookkeeping is its own class (``_Leases``) here because
every key-removing operation updates it in the same critical section.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from time import time as _wall_seconds
from typing import Any, Final

from gevent.monkey import get_original
from sortedcontainers import SortedList

from .._cooperative import CHUNK, pause
from ..errors import BackupInProgressError, InvalidOptionsError, KVError, QuotaExceededError, RestoreInProgressError
from .base import (
    PURGE_STEP,
    Backend,
    BackupReader,
    Batch,
    ClaimRecord,
    Scope,
    apply_increment,
    check_quota,
    prefix_end,
    quota_message,
    reject_unknown,
    wall_clock_ms,
)
from .memory_ttl import Expiries

__all__ = ["SCOPE", "MemoryBackend", "MemorySpec", "configure"]

SCOPE: Final[Scope] = "process"
"""Who shares a store of this backend (see ``backends.base.Scope``)."""

# The real OS lock even when gevent has patched threading: it must exclude
# threads of gevent's threadpool too, and no critical section here yields.
_allocate_lock = get_original("_thread", "allocate_lock")


_REBUILD_ATTEMPTS = 3
"""Tries of rebuild_key_list beside writers before it holds them off."""

_RESTORE_SLICE = 2_000
"""Entries a restore indexes between two pauses."""

_REBUILD_SLICE = 2_000
"""Keys a rebuild copies into the new index between two pauses (~1 us each at a million keys: most of it the dense list's slot map)."""

_PREFIX_DRAWS = 8
"""Draws from all keys that ``random_key(prefix)`` tries before it bisects, for a prefix not seen yet."""

_PREFIX_DRAWS_MAX = 64
"""The most draws ``random_key(prefix)`` tries, for a prefix known to hold a wide share of the keys."""

_PREFIX_MEMO = 256
"""Prefixes whose draw count ``random_key`` remembers (the memo is emptied when it holds more)."""


def _prefix_draws(matching: int, n: int) -> int:
    """Draws worth trying for a prefix holding ``matching`` of ``n`` keys before bisecting.

    About 4 times the expected draws (all miss with probability about e^-4),
    at most :data:`_PREFIX_DRAWS_MAX`; none below a sixteenth of the keys,
    where two bisections cost less than the draws.
    """
    if not matching or matching * 16 < n:
        return 0
    return min(_PREFIX_DRAWS_MAX, -(-4 * n // matching))


_CLAIM_DRAWS = 8
"""Uniform draws that a random claim or pop tries per key, from all keys and
then from the matching ones, before it draws exactly among the free ranks."""

_WALK_RATIO = 256
"""An exact draw of one key costs about as much as a walk over this many
matching keys: a random claim or pop that still wants more than 1/256 of
them walks them once instead."""

_EARLY_WALK_RATIO = 8
"""A batch that wants more than 1/8 of the matching keys walks them from the
start: rejection draws slow down as the batch fills the keys."""

_DELETE_SLICE = 500
"""Keys ``delete_prefix`` removes in one critical section: ~5 us a key at a
million keys (the sorted list's removal and the dense list's swap each miss
the CPU caches), so 2-3 ms."""

_BACKUP_SLICE = 2_000
"""Entries a backup reads in one critical section (~1 us each)."""

_FREE_SLICE = 2_000
"""Entries a dropped structure frees between two pauses: freeing a key, its
value and its slot costs up to ~1-2 us an entry at a million keys (cache
misses), and freeing a million-key index at once held the hub for 100 ms."""

_MAX_PAGE: Final = (1 << 62)
"""A larger scan limit is clamped to this (islice takes at most sys.maxsize); no store holds as many keys."""


_SHARDS = 64
"""The values and the slot map are split in this many dicts: growing one dict
of a million keys stalls the process for 30-60 ms at each resize; growing 64
small ones never does."""

_PURGE_SLICE = 1_000
"""Expired entries one step of a purge before a range operation removes (~2 us each at a million keys)."""

_SETTLE_MAX = 256
"""Expired entries a range operation removes inside its own critical section; more are first purged in steps."""

_QUOTA_PURGE = 1_000
"""Expired entries a write refused by a quota removes before it checks again."""


class _Index:
    """The key index: sorted keys, and with tracking a dense list for O(1) sampling.

    ``slot_of`` maps a key to its position in ``slots``, in shards chosen by
    the key's (cached) hash.
    """

    __slots__ = ("changes", "draws", "journals", "order", "slot_of", "slots", "tracked")

    def __init__(self, tracked: bool) -> None:
        self.tracked = tracked
        self.changes = 0  # keys added or removed one by one since creation
        # random_key(prefix): draws to try per prefix, from the share it held when last bisected (speed only)
        self.draws: dict[bytes, int] = {}
        self.order: SortedList[bytes] = SortedList()
        self.slots: list[bytes] = []
        self.slot_of: list[dict[bytes, int]] = [{} for _ in range(_SHARDS)] if tracked else []
        # While it is a _FollowedIndex: the journals of the rebuilds following it.
        self.journals: list[list[tuple[bool, bytes]]] = []

    def extend(self, keys: list[bytes]) -> None:
        """Add distinct keys known to be absent, in bulk."""
        self.changes += len(keys)
        self.order.update(keys)
        if self.tracked:
            self._track(keys)

    def append_sorted(self, keys: list[bytes]) -> None:
        """Add distinct keys, ascending and each above every key indexed, in O(len(keys)).

        ``extend`` adds a batch to a large sorted list one key at a time
        (~2 us each at a million keys); a rebuild copies the keys in order.
        """
        self.changes += len(keys)
        _append_sorted(self.order, keys)
        if self.tracked:
            self._track(keys)

    def _track(self, keys: list[bytes]) -> None:
        slot_of = self.slot_of
        slot = len(self.slots)
        for key in keys:
            slot_of[hash(key) % _SHARDS][key] = slot
            slot += 1
        self.slots.extend(keys)

    def add(self, key: bytes) -> None:
        self.changes += 1
        self.order.add(key)
        if self.tracked:
            self.slot_of[hash(key) % _SHARDS][key] = len(self.slots)
            self.slots.append(key)

    def remove(self, key: bytes) -> None:
        self.changes += 1
        self.order.remove(key)
        if self.tracked:
            slot = self.slot_of[hash(key) % _SHARDS].pop(key)
            last = self.slots.pop()
            if slot < len(self.slots):
                self.slots[slot] = last
                self.slot_of[hash(last) % _SHARDS][last] = slot


class _FollowedIndex(_Index):
    """The live index while a rebuild follows it: every change is also appended to each journal in ``journals``.

    A rebuild turns the live index into one (``__class__`` assignment: same
    slots) and back, under the lock, so that writers pay for the journal
    only while such a rebuild runs.
    """

    __slots__ = ()

    def extend(self, keys: list[bytes]) -> None:
        _Index.extend(self, keys)
        for journal in self.journals:
            journal.extend([(True, key) for key in keys])

    def add(self, key: bytes) -> None:
        _Index.add(self, key)
        for journal in self.journals:
            journal.append((True, key))

    def remove(self, key: bytes) -> None:
        _Index.remove(self, key)
        for journal in self.journals:
            journal.append((False, key))


class _Leases:
    """The leases: their records, and the keys they hold, sorted.

    ``records`` maps a key to ``(token, expires_ms, owner)``. Every key with a
    record is in exactly one of ``held`` (its lease ends after ``seen``) and
    ``expired``; ``deadlines`` holds ``(expires_ms, key)`` for the held keys.
    ``seen`` is the latest now of any lease operation: the leases' clock
    never goes back, so a lease found expired stays expired, and ``held``
    is exactly the set of live leases after :meth:`advance`.

    A grant enters ``held`` and ``deadlines`` at :meth:`settle`, in bulk:
    the granting operation settles before it reads ``held`` and before it
    ends, so every other operation finds them settled.
    """

    __slots__ = ("deadlines", "expired", "held", "pending", "records", "seen")

    def __init__(self, seen: int = 0) -> None:
        self.records: dict[bytes, tuple[int, int, bytes]] = {}
        self.held: SortedList[bytes] = SortedList()
        self.expired: SortedList[bytes] = SortedList()
        self.deadlines: SortedList[tuple[int, bytes]] = SortedList()
        self.pending: list[bytes] = []
        self.seen = seen

    def advance(self, clock_now: int) -> int:
        """Now for a lease operation (never before ``seen``); moves the leases that ended to ``expired``.

        O(log n) per lease that ended since the last call, paid by the first
        lease operation after its end.
        """
        now = max(self.seen, clock_now)
        deadlines = self.deadlines
        if deadlines and deadlines[0][0] <= now:
            cut = deadlines.bisect_left((now + 1,))  # every (expires, key) with expires <= now
            ended = [key for _, key in deadlines.islice(0, cut)]
            del deadlines[:cut]
            held = self.held
            for key in ended:
                held.remove(key)
            self.expired.update(ended)
        self.seen = now
        return now

    def grant(self, key: bytes, lease: tuple[int, int, bytes]) -> None:
        """Give ``key``, which has no live lease, the lease ``lease``; :meth:`settle` before ``held`` is read."""
        records = self.records
        if key in records:  # an expired lease, taken over
            self.expired.remove(key)
        records[key] = lease
        self.pending.append(key)

    def settle(self) -> None:
        """Enter the pending grants in ``held`` and ``deadlines`` (sorted in bulk when there are many)."""
        pending = self.pending
        if len(pending) == 1:
            key = pending[0]
            self.held.add(key)
            self.deadlines.add((self.records[key][1], key))
        elif pending:
            records = self.records
            self.held.update(pending)
            self.deadlines.update([(records[key][1], key) for key in pending])
        pending.clear()

    def end(self, key: bytes, lease: tuple[int, int, bytes]) -> None:
        """Forget ``key``'s lease ``lease``, live or expired."""
        del self.records[key]
        if lease[1] > self.seen:
            self.held.remove(key)
            self.deadlines.remove((lease[1], key))
        else:
            self.expired.remove(key)

    def drop(self, key: bytes) -> None:
        """Forget ``key``'s lease if it has one: its key is being removed."""
        lease = self.records.get(key)
        if lease is not None:
            self.end(key, lease)

    def renew(self, key: bytes, lease: tuple[int, int, bytes], expires: int) -> None:
        """Move the end of ``key``'s live lease ``lease`` to ``expires``."""
        self.deadlines.remove((lease[1], key))
        self.deadlines.add((expires, key))
        self.records[key] = (lease[0], expires, lease[2])


class MemoryBackend(Backend):
    """The store of one process, in memory. See the module docstring."""

    kind = "memory"
    scope = SCOPE

    def __init__(
        self, track_keys: bool = True, name: str = "default", max_keys: int | None = None, max_bytes: int | None = None
    ) -> None:
        self.location = f"memory store {name!r} of this process"
        self.max_keys = max_keys
        self.max_bytes = max_bytes
        # Whether writes that add data check the quota (in their critical section, before they write).
        self._quota = max_keys is not None or max_bytes is not None
        self._lock = _allocate_lock()
        self._track_keys = track_keys
        # The values, in shards chosen by the key's (cached) hash, so that no
        # dict grows past a few tens of thousands of keys: one dict of a
        # million keys stalls the process for 30-60 ms each time it resizes.
        self._shards = _new_shards()
        self._index = _Index(track_keys)
        # Bytes of keys plus values, kept by every write so stats() is O(1).
        self._bytes = 0
        self._leases = _Leases()
        # The last token granted: never reset, so tokens never repeat in this
        # store's life, across clear and restore too.
        self._token = 0
        # When set, every mutating call raises this: a strict backup or a
        # restore is running. Checked under the lock.
        self._writers_refused: type[KVError] | None = None
        self._backup_running = False
        self._markers: dict[bytes, bytes] = {}
        # The entries' expiries, None while no entry has one (see the module docstring).
        self._ttl: Expiries | None = None
        self._clock: Callable[[], int] = wall_clock_ms
        self._wall_clock = True

    @property
    def clock(self) -> Callable[[], int]:
        """As :attr:`Backend.clock`; a property so that ``get`` knows when it may read the wall clock inline."""
        return self._clock

    @clock.setter
    def clock(self, clock: Callable[[], int]) -> None:
        with self._lock:
            self._clock = clock
            self._wall_clock = clock is wall_clock_ms
            if self._ttl is not None:
                self._ttl.on_wall_clock(self._wall_clock)

    def _check_quota(self, new_keys: int, grown: int, now: int | None = None) -> None:
        """Under the lock, before a write that adds ``new_keys`` keys and ``grown`` key+value bytes: QuotaExceededError if it would pass the quota.

        Over it, entries expired at ``now`` (the write's own now, None when
        no key expired then) are removed first, up to :data:`_QUOTA_PURGE`,
        and the quota checked again. The write's own keys are never among
        them: it removed them already if they had expired at that ``now``
        (a later reading of the clock could find them expired since, and
        remove an entry the write has read).
        """
        refused = self._over_quota(new_keys, grown)
        if refused is not None and now is not None and self._purge_locked(now, _QUOTA_PURGE):
            refused = self._over_quota(new_keys, grown)
        if refused is not None:
            raise QuotaExceededError(refused)

    def _over_quota(self, new_keys: int, grown: int) -> str | None:
        if new_keys > 0 and self.max_keys is not None and len(self._index.order) + new_keys > self.max_keys:
            return quota_message("max_keys", self.max_keys)
        if grown > 0 and self.max_bytes is not None and self._bytes + grown > self.max_bytes:
            return quota_message("max_bytes", self.max_bytes)
        return None

    # -- expiries (under the lock unless said otherwise) -------------------------

    def _is_expired(self, key: bytes, shard: int) -> bool:
        """Whether ``key`` has an expiry that has passed; any lock or none (one dict lookup, then a clock read)."""
        ttl = self._ttl
        if ttl is None:
            return False
        if ttl.horizon > _wall_seconds():
            return False
        now = self._clock()
        if ttl.earliest > now:
            return False
        at = ttl.at[shard].get(key)
        return at is not None and at <= now

    def _settle_key(self, key: bytes, shard: int) -> int:
        """Before a write to ``key`` while some key has an expiry: now, ``key``'s entry removed if it has expired, and up to PURGE_STEP more expired ones."""
        now = self.clock()
        ttl = self._ttl
        if ttl is not None:
            at = ttl.at[shard].get(key)
            if at is not None and at <= now:
                self._remove_entry(key, shard)
            self._purge_locked(now, PURGE_STEP)
        return now

    def _remove_entry(self, key: bytes, shard: int) -> None:
        """Remove the stored entry at ``key``: its value, index entry, lease and expiry."""
        self._bytes -= len(key) + len(self._shards[shard].pop(key))
        self._index.remove(key)
        if self._leases.records:
            self._leases.drop(key)
        self._unexpire(key, shard)

    def _unexpire(self, key: bytes, shard: int) -> bool:
        """Drop ``key``'s expiry if it has one (whether it had); back to no Expiries at all when it was the last."""
        ttl = self._ttl
        if ttl is None or not ttl.drop(key, shard):
            return False
        if not ttl.deadlines:
            self._ttl = None
        return True

    def _expire_at(self, key: bytes, shard: int, at: int) -> None:
        """``key``, which is stored, expires at ``at``."""
        ttl = self._ttl
        if ttl is None:
            ttl = self._ttl = Expiries(_SHARDS, self._wall_clock)
        ttl.put(key, shard, at)

    def _purge_locked(self, now: int, limit: int | None) -> int:
        """Remove up to ``limit`` (None: every one) entries expired at ``now``, earliest first; how many. O(log n) each."""
        ttl = self._ttl
        if ttl is None:
            return 0
        keys = ttl.take_due(now, limit)
        if keys:
            shards = self._shards
            index = self._index
            leases = self._leases
            freed = 0
            for key in keys:
                freed += len(key) + len(shards[hash(key) % _SHARDS].pop(key))
                index.remove(key)
                if leases.records:
                    leases.drop(key)
            self._bytes -= freed
            if not ttl.deadlines:
                self._ttl = None
        return len(keys)

    def _shed(self) -> None:
        """Not under the lock: before a range operation, remove expired entries in steps with pauses until at most :data:`_SETTLE_MAX` are left.

        Gives up (the operation then removes the rest in its critical
        section) after as many steps as the first count called for, plus a
        few: a clock that makes keys expire faster than the steps remove them
        could otherwise keep the caller here.
        """
        steps: int | None = None
        while True:
            with self._lock:
                ttl = self._ttl
                if ttl is None:
                    return
                now = self.clock()
                due = ttl.due(now)
                if due <= _SETTLE_MAX:
                    return
                if steps is None:
                    steps = due // _PURGE_SLICE + 4
                elif steps <= 0:
                    return
                self._purge_locked(now, _PURGE_SLICE)
            steps -= 1
            pause()

    def _settle(self) -> int:
        """Under the lock, at the start of a range operation (after :meth:`_shed`): now, every entry expired at it removed, so that all the keys left are live."""
        now = self.clock()
        if self._ttl is not None:
            self._purge_locked(now, None)
        return now

    def expire(self, key: bytes, ttl_ms: int) -> bool:
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            shard = hash(key) % _SHARDS
            now = self._settle_key(key, shard)
            if key not in self._shards[shard]:
                return False
            self._expire_at(key, shard, now + ttl_ms)
            return True

    def persist(self, key: bytes) -> bool:
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            if self._ttl is None:
                return False
            shard = hash(key) % _SHARDS
            self._settle_key(key, shard)
            return key in self._shards[shard] and self._unexpire(key, shard)

    def expiry(self, key: bytes) -> tuple[bool, int | None]:
        with self._lock:
            shard = hash(key) % _SHARDS
            if key not in self._shards[shard]:
                return False, None
            ttl = self._ttl
            at = None if ttl is None else ttl.at[shard].get(key)
            if at is None:
                return True, None
            now = self.clock()
            return (True, at - now) if at > now else (False, None)

    def purge_expired(self, limit: int) -> int:
        """One critical section: O(limit log n), about 2 us an entry at a million keys. Also while writers are refused (it changes nothing a reader sees)."""
        with self._lock:
            if self._ttl is None:
                return 0
            return self._purge_locked(self.clock(), max(limit, 1))

    # -- single-key operations --------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        ttl = self._ttl
        if ttl is None:  # no key expires: the read as it always was
            return self._shards[hash(key) % _SHARDS].get(key)
        shard = hash(key) % _SHARDS
        value = self._shards[shard].get(key)
        if value is None:
            return None
        if ttl.horizon > _wall_seconds():  # on the wall clock, read inline: nothing has expired yet
            return value
        now = self._clock()
        if ttl.earliest > now:
            return value
        at = ttl.at[shard].get(key)
        return value if at is None or at > now else None

    def exists(self, key: bytes) -> bool:
        shard = hash(key) % _SHARDS
        return key in self._shards[shard] and not (self._ttl is not None and self._is_expired(key, shard))

    def set(self, key: bytes, value: bytes, ttl_ms: int | None = None) -> None:
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            shard = hash(key) % _SHARDS
            now = self._settle_key(key, shard) if self._ttl is not None else None
            data = self._shards[shard]
            previous = data.get(key)
            if previous is None:
                if self._quota:
                    self._check_quota(1, len(key) + len(value), now)
                self._index.add(key)
                self._bytes += len(key) + len(value)
            else:
                if self._quota:
                    self._check_quota(0, len(value) - len(previous), now)
                self._bytes += len(value) - len(previous)
            data[key] = value
            self._set_expiry(key, shard, now, ttl_ms)

    def _set_expiry(self, key: bytes, shard: int, now: int | None, ttl_ms: int | None) -> None:
        """After a write that stores ``key`` as ``set`` does: it expires ``ttl_ms`` from ``now`` (read now if None), or never."""
        if ttl_ms is not None:
            self._expire_at(key, shard, (self.clock() if now is None else now) + ttl_ms)
        elif self._ttl is not None:
            self._unexpire(key, shard)

    def delete(self, key: bytes) -> bool:
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            shard = hash(key) % _SHARDS
            if self._ttl is not None:
                self._settle_key(key, shard)
            previous = self._shards[shard].pop(key, None)
            if previous is None:
                return False
            self._index.remove(key)
            self._bytes -= len(key) + len(previous)
            if self._leases.records:
                self._leases.drop(key)
            if self._ttl is not None:
                self._unexpire(key, shard)
            return True

    def increment_by(self, key: bytes, delta: int, ttl_ms: int | None = None) -> int:
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            shard = hash(key) % _SHARDS
            now = self._settle_key(key, shard) if self._ttl is not None else None
            data = self._shards[shard]
            current = data.get(key)
            value, encoded = apply_increment(current, delta)
            if self._quota:
                if current is None:
                    self._check_quota(1, len(key) + len(encoded), now)
                else:
                    self._check_quota(0, len(encoded) - len(current), now)
            if current is None:
                self._index.add(key)
                self._bytes += len(key) + len(encoded)
                if ttl_ms is not None:  # a new counter (absent or expired): its window starts now
                    self._expire_at(key, shard, (self.clock() if now is None else now) + ttl_ms)
            else:
                self._bytes += len(encoded) - len(current)
            data[key] = encoded
            return value

    def get_or_set(self, key: bytes, value: bytes, ttl_ms: int | None = None) -> tuple[bytes, bool]:
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            shard = hash(key) % _SHARDS
            now = self._settle_key(key, shard) if self._ttl is not None else None
            data = self._shards[shard]
            current = data.get(key)
            if current is not None:
                return current, True
            if self._quota:
                self._check_quota(1, len(key) + len(value), now)
            self._index.add(key)
            self._bytes += len(key) + len(value)
            data[key] = value
            if ttl_ms is not None:  # the key was absent: no expiry to drop
                self._expire_at(key, shard, (self.clock() if now is None else now) + ttl_ms)
            return value, False

    def swap(self, key: bytes, value: bytes, ttl_ms: int | None = None) -> bytes | None:
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            shard = hash(key) % _SHARDS
            now = self._settle_key(key, shard) if self._ttl is not None else None
            data = self._shards[shard]
            previous = data.get(key)
            if self._quota:
                if previous is None:
                    self._check_quota(1, len(key) + len(value), now)
                else:
                    self._check_quota(0, len(value) - len(previous), now)
            if previous is None:
                self._index.add(key)
                self._bytes += len(key) + len(value)
            else:
                self._bytes += len(value) - len(previous)
            data[key] = value
            self._set_expiry(key, shard, now, ttl_ms)
            return previous

    def compare_and_swap(self, key: bytes, old: bytes | None, new: bytes, ttl_ms: int | None = None) -> bool:
        return self.compare_and_swap_detailed(key, old, new, ttl_ms)[0]

    def compare_and_swap_detailed(
        self, key: bytes, old: bytes | None, new: bytes, ttl_ms: int | None = None
    ) -> tuple[bool, bytes | None]:
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            shard = hash(key) % _SHARDS
            now = self._settle_key(key, shard) if self._ttl is not None else None
            data = self._shards[shard]
            current = data.get(key)
            if current != old:
                return False, current
            if self._quota:
                if current is None:
                    self._check_quota(1, len(key) + len(new), now)
                else:
                    self._check_quota(0, len(new) - len(current), now)
            if current is None:
                self._index.add(key)
                self._bytes += len(key) + len(new)
            else:
                self._bytes += len(new) - len(current)
            data[key] = new
            self._set_expiry(key, shard, now, ttl_ms)
            return True, current

    def compare_and_delete(self, key: bytes, old: bytes) -> bool:
        return self.compare_and_delete_detailed(key, old)[0]

    def compare_and_delete_detailed(self, key: bytes, old: bytes) -> tuple[bool, bytes | None]:
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            shard = hash(key) % _SHARDS
            if self._ttl is not None:
                self._settle_key(key, shard)
            current = self._shards[shard].get(key)
            if current is None or current != old:
                return False, current
            self._remove_entry(key, shard)
            return True, current

    # -- batches --------------------------------------------------------------

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        with self._lock:
            shards = self._shards
            ttl = self._ttl
            if ttl is None:
                return [shards[hash(k) % _SHARDS].get(k) for k in keys]
            now = self.clock()
            if ttl.earliest > now:
                return [shards[hash(k) % _SHARDS].get(k) for k in keys]
            values: list[bytes | None] = []
            for key in keys:
                shard = hash(key) % _SHARDS
                value = shards[shard].get(key)
                if value is not None:
                    at = ttl.at[shard].get(key)
                    if at is not None and at <= now:
                        value = None
                values.append(value)
            return values

    def set_many(self, items: list[tuple[bytes, bytes]], ttl_ms: int | None = None) -> None:
        """All the items in one critical section: about 1 us per item (0.1 s for the largest batch), twice that with expiries."""
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            now = None
            if self._ttl is not None:
                now = self._settle_keys([key for key, _ in items])
            if self._quota:
                self._check_quota(*_growth(self._shards, items), now)
            added, grown = _put_rows(self._shards, items)
            self._index.extend(added)
            self._bytes += grown
            if ttl_ms is not None:
                at = (self.clock() if now is None else now) + ttl_ms
                for key, _ in items:
                    self._expire_at(key, hash(key) % _SHARDS, at)
            elif self._ttl is not None:
                for key, _ in items:
                    self._unexpire(key, hash(key) % _SHARDS)

    def _settle_keys(self, keys: list[bytes]) -> int:
        """As :meth:`_settle_key` for each of ``keys``: now, their expired entries removed, then up to PURGE_STEP more."""
        now = self.clock()
        for key in keys:
            ttl = self._ttl
            if ttl is None:
                break
            shard = hash(key) % _SHARDS
            at = ttl.at[shard].get(key)
            if at is not None and at <= now and key in self._shards[shard]:
                self._remove_entry(key, shard)
        self._purge_locked(now, PURGE_STEP)
        return now

    def delete_many(self, keys: list[bytes]) -> int:
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            if self._ttl is not None:
                self._settle_keys(keys)
            shards = self._shards
            leases = self._leases
            index = self._index
            removed = 0
            freed = 0
            for key in keys:
                shard = hash(key) % _SHARDS
                previous = shards[shard].pop(key, None)
                if previous is not None:
                    index.remove(key)
                    freed += len(key) + len(previous)
                    removed += 1
                    if leases.records:
                        leases.drop(key)
                    if self._ttl is not None:
                        self._unexpire(key, shard)
            self._bytes -= freed
            return removed

    # -- whole-store operations -------------------------------------------

    def clear(self) -> None:
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            old = self._shards, self._index, self._leases, self._ttl
            self._shards = _new_shards()
            self._index = _Index(self._track_keys)
            self._bytes = 0
            self._leases = _Leases(self._leases.seen)
            self._ttl = None
        _dispose(*old)

    def size(self) -> int:
        """O(1); with expiries, minus the expired entries not yet removed: one bisection of the deadlines."""
        if self._ttl is None:
            return len(self._index.order)
        with self._lock:
            ttl = self._ttl
            total = len(self._index.order)
            return total if ttl is None else total - ttl.due(self.clock())

    def count(self, low: bytes, high: bytes | None) -> int:
        """Two bisections of the sorted keys: O(log n) (once the expired entries are removed: see the module docstring)."""
        if self._ttl is not None:
            self._shed()
        with self._lock:
            self._settle()
            order = self._index.order
            last = len(order) if high is None else order.bisect_left(high)
            return max(last - order.bisect_left(low), 0) if low else last

    def stats(self) -> dict[str, int]:
        """O(1) (the leases that ended since the last lease operation are first moved aside, the expired entries removed)."""
        if self._ttl is not None:
            self._shed()
        with self._lock:
            leases = self._leases
            leases.advance(self._settle())
            return {
                "keys": len(self._index.order),
                "bytes": self._bytes,
                "claims": len(leases.held),
                "expired_claims": len(leases.expired),
            }

    def scan(self, low: bytes, high: bytes | None, offset: int, limit: int) -> tuple[list[tuple[bytes, bytes]], bool]:
        if self._ttl is not None:
            self._shed()
        with self._lock:
            self._settle()
            page, more = self._scan_keys_locked(low, high, offset, limit)
            shards = self._shards
            return [(k, shards[hash(k) % _SHARDS][k]) for k in page], more

    def scan_keys(self, low: bytes, high: bytes | None, offset: int, limit: int) -> tuple[list[bytes], bool]:
        if self._ttl is not None:
            self._shed()
        with self._lock:
            self._settle()
            return self._scan_keys_locked(low, high, offset, limit)

    def _scan_keys_locked(self, low: bytes, high: bytes | None, offset: int, limit: int) -> tuple[list[bytes], bool]:
        """O(log n + k) for a page of k keys, whatever the offset: SortedList's positional index skips it."""
        order = self._index.order
        if offset > 0:
            first = order.bisect_left(low) + offset
            last = len(order) if high is None else order.bisect_left(high)
            if 0 < limit < last - first:
                return list(order.islice(first, first + limit)), True
            return (list(order.islice(first, last)) if first < last else []), False
        keys = order.irange(low, high, (True, False))
        if limit > 0:
            page = list(islice(keys, min(limit, _MAX_PAGE) + 1))
            more = len(page) > limit
            if more:
                page.pop()
            return page, more
        return list(keys), False

    def delete_prefix(self, prefix: bytes, limit: int) -> tuple[int, bool]:
        """Slices of :data:`_DELETE_SLICE` keys (a few ms each), each atomic, with a pause between them."""
        end = prefix_end(prefix)
        deleted = 0
        while True:
            with self._lock:
                if self._writers_refused is not None:
                    raise self._writers_refused()
                index = self._index
                order = index.order
                lo = order.bisect_left(prefix)
                hi = len(order) if end is None else order.bisect_left(end)
                step = min(hi - lo, _DELETE_SLICE)
                if limit > 0:
                    step = min(step, limit - deleted)
                shards = self._shards
                leases = self._leases
                ttl = self._ttl
                now = 0 if ttl is None else self.clock()
                freed = 0
                expired = 0  # already absent: not counted as removed
                for key in order[lo : lo + step]:
                    shard = hash(key) % _SHARDS
                    freed += len(key) + len(shards[shard].pop(key))
                    index.remove(key)
                    if leases.records:
                        leases.drop(key)
                    if ttl is not None:
                        at = ttl.at[shard].get(key)
                        if at is not None:
                            ttl.drop(key, shard)
                            expired += at <= now
                if ttl is not None and not ttl.deadlines:
                    self._ttl = None
                self._bytes -= freed
                deleted += step - expired
                remaining = hi - lo - step
            if remaining == 0:
                return deleted, True
            if 0 < limit <= deleted:
                return deleted, False
            pause()

    # -- random choices -----------------------------------------------------

    def random_key(self, prefix: bytes) -> bytes | None:
        if self._ttl is not None:
            self._shed()
        with self._lock:
            self._settle()
            index = self._index
            if not prefix:
                n = len(index.order)
                if n == 0:
                    return None
                return index.slots[random.randrange(n)] if index.tracked else index.order[random.randrange(n)]
            draws = index.draws
            if index.tracked and index.slots:
                # A few uniform draws from all keys, kept when they match, are
                # a uniform draw among the matching keys; for a wide prefix
                # this avoids two bisections. A narrow one falls through. How
                # many draws comes from earlier calls (the prefix's share when
                # last bisected), never from this call's draws: still uniform.
                slots = index.slots
                n = len(slots)
                for _ in range(draws.get(prefix, _PREFIX_DRAWS)):
                    key = slots[int(random.random() * n)]
                    if key.startswith(prefix):
                        return key
            order = index.order
            lo, hi = _bounds(order, prefix)
            if len(draws) >= _PREFIX_MEMO:
                draws.clear()
            draws[prefix] = _prefix_draws(hi - lo, len(order))
            return order[random.randrange(lo, hi)] if hi > lo else None

    def random_keys(self, prefix: bytes, count: int, unique: bool) -> list[bytes]:
        """O(count log n): ranks drawn among the matching keys' ranks."""
        if self._ttl is not None:
            self._shed()
        with self._lock:
            self._settle()
            order = self._index.order
            lo, hi = _bounds(order, prefix)
            n = hi - lo
            if n <= 0:
                return []
            if not unique:
                rand = random.random
                return [order[lo + int(rand() * n)] for _ in range(count)]
            if count >= n:
                keys = list(order.islice(lo, hi))
                random.shuffle(keys)
                return keys
            return [order[rank] for rank in random.sample(range(lo, hi), count)]

    def claim_random(self, prefix: bytes, count: int, ttl_ms: int, owner: bytes) -> list[ClaimRecord]:
        """A uniform subset of the free matching keys, drawn by :meth:`_free_keys` (see its cost)."""
        if self._ttl is not None:
            self._shed()
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            leases = self._leases
            now = leases.advance(self._settle())
            shards = self._shards
            expires = now + ttl_ms
            records = []
            try:
                for key in self._free_keys(prefix, count, now):
                    self._token += 1
                    leases.grant(key, (self._token, expires, owner))
                    records.append(ClaimRecord(key, shards[hash(key) % _SHARDS][key], self._token, expires))
            finally:
                leases.settle()
            return records

    def pop_random(self, prefix: bytes, count: int) -> list[tuple[bytes, bytes]]:
        """Chosen as :meth:`claim_random` chooses (:meth:`_free_keys`); then O(log n) per key removed."""
        if self._ttl is not None:
            self._shed()
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            leases = self._leases
            now = leases.advance(self._settle())
            index = self._index
            shards = self._shards
            rows = []
            for key in self._free_keys(prefix, count, now):
                shard = hash(key) % _SHARDS
                value = shards[shard].pop(key)
                index.remove(key)
                self._bytes -= len(key) + len(value)
                if leases.records:
                    leases.drop(key)  # an expired lease
                if self._ttl is not None:
                    self._unexpire(key, shard)
                rows.append((key, value))
            return rows

    def _free_keys(self, prefix: bytes, count: int, now: int) -> Iterator[bytes]:
        """Up to ``count`` distinct matching keys without a live lease, a uniform subset. Under the lock, after ``advance``.

        The caller claims or removes each key before it asks for the next.
        Each key is a uniform draw among the free keys left, so the whole is
        a uniform subset: by rejection (:meth:`_draw_free`, O(1) or O(log n)
        a key) while that keeps finding free keys; once it misses, either one
        walk of the matching keys and a sample of the free ones, O(m) for m
        matching keys, when many keys are still wanted, or else
        :meth:`_pick_free_exact`, O(log h * log n) a key for h held keys. A
        batch that wants more than 1/8 of the matching keys walks at once.
        """
        order = self._index.order
        given = 0
        # A batch that wants a good part of the matching keys walks them at once.
        if count == 1 or count * _EARLY_WALK_RATIO < _span(order, prefix):
            while given < count:
                key = self._draw_free(prefix, now)
                if key is None:
                    break
                yield key
                given += 1
            else:
                return
        wanted = count - given
        lo, hi = _bounds(order, prefix)
        if wanted * _WALK_RATIO >= hi - lo:
            records = self._leases.records
            free = []
            for key in order.islice(lo, hi):
                lease = records.get(key)
                if lease is None or lease[1] <= now:
                    free.append(key)
            yield from random.sample(free, min(wanted, len(free)))
            return
        for _ in range(wanted):
            key = self._pick_free_exact(prefix)
            if key is None:
                return
            yield key

    def _draw_free(self, prefix: bytes, now: int) -> bytes | None:
        """A key drawn uniformly among the matching keys without a live lease, by rejection; None when the draws all missed.

        A few uniform draws from all keys (with ``track_keys``: O(1) each),
        kept when the key matches and is free, which suits a wide prefix;
        then a few uniform draws among the matching keys' ranks (two
        bisections, then O(log n) each). Every free matching key is equally
        likely to be accepted at each draw, so the result is uniform; on
        None :meth:`_free_keys` goes on with a walk or an exact draw, which
        are uniform too, so the mix is. Under the lock.
        """
        index = self._index
        order = index.order
        total = len(order)
        if total == 0:
            return None
        records = self._leases.records
        rand = random.random
        if index.tracked:
            slots = index.slots
            for _ in range(_CLAIM_DRAWS):
                key = slots[int(rand() * total)]
                if key.startswith(prefix):
                    if records:
                        lease = records.get(key)
                        if lease is not None and lease[1] > now:
                            continue
                    return key
            if not prefix:
                return None
        lo, hi = _bounds(order, prefix)
        n = hi - lo
        if n > 0:
            for _ in range(_CLAIM_DRAWS):
                key = order[lo + int(rand() * n)]
                if records:
                    lease = records.get(key)
                    if lease is not None and lease[1] > now:
                        continue
                return key
        return None

    def _pick_free_exact(self, prefix: bytes) -> bytes | None:
        """A key drawn uniformly among the matching keys without a live lease; None when there is none. Under the lock, after ``advance``.

        Draws an index among the free ranks of the matching range and maps it
        past the held ranks: the index-th free rank is lo + index + c, where
        c counts the held keys below it, i.e. the j with rank(held[j]) - lo - j
        <= index (non-decreasing in j, so a bisection over the held keys
        finds c). O(log h * log n) for h held keys.
        """
        order = self._index.order
        leases = self._leases
        leases.settle()
        held = leases.held
        lo, hi = _bounds(order, prefix)
        first, last = _bounds(held, prefix)
        free = (hi - lo) - (last - first)
        if free <= 0:
            return None
        index = random.randrange(free)
        a, b = 0, last - first
        while a < b:
            mid = (a + b) >> 1
            if order.bisect_left(held[first + mid]) - lo - mid <= index:
                a = mid + 1
            else:
                b = mid
        return order[lo + index + a]

    def rebuild_key_list(self) -> None:
        # The index changes in the same critical section as the data, so it
        # cannot drift; rebuilding recomputes it from the keys a chunk at a
        # time, and swaps it in if no key came or went meanwhile (else again).
        # Writers that keep changing the keys get a last build that follows
        # their changes instead of holding them off.
        for _ in range(_REBUILD_ATTEMPTS):
            if self._rebuild(follow=False):
                return
        self._rebuild(follow=True)

    def _rebuild(self, follow: bool) -> bool:
        """Build an index from the sorted keys, :data:`_REBUILD_SLICE` of them per critical section with a pause between, and swap it in; whether it was.

        Without ``follow``, gives up at the first chunk that finds that a key
        came or went since the build began: the index is swapped in only if
        nothing changed meanwhile. With ``follow``, the live index journals
        every change while the build runs: each critical section takes the
        journal, the changes to keys at or below the last key copied are
        replayed into the new index (a change further on is seen when its
        chunk is copied), and the last one, which finds no key left to copy,
        replays the rest and swaps: the index swapped in holds exactly the
        keys of that instant, and writers were never held off. Either way
        it gives up when the index was replaced meanwhile (clear, restore,
        close: the new one is fresh). The index dropped, the old one or the
        unfinished one, is freed a slice at a time.
        """
        index = _Index(self._track_keys)
        journal: list[tuple[bool, bytes]] = []
        after: bytes | None = None  # the last key copied
        with self._lock:
            current = self._index
            changes = current.changes
            if follow:
                current.journals.append(journal)
                current.__class__ = _FollowedIndex
        swapped = False
        try:
            while True:
                with self._lock:
                    if self._index is not current or (not follow and current.changes != changes):
                        return False
                    changed = journal[:]
                    journal.clear()
                    keys = list(islice(current.order.irange(after, None, (False, True)), _REBUILD_SLICE))
                    if not keys:
                        _replay(index, changed, after)
                        self._index = index
                        swapped = True
                        return True
                _replay(index, changed, after)
                index.append_sorted(keys)
                after = keys[-1]
                # The sublists just made are young: a collection of the young
                # generations traverses every key they hold. Left to the
                # collector, they pile up between its collections (a build
                # allocates few objects) and one collection of 200,000 keys'
                # worth held the hub for 30-80 ms; collected now, a slice's
                # worth (plus the few thousand objects the young generations
                # hold at most) goes to the oldest generation in well under a
                # millisecond.
                gc.collect(1)
                pause()
        finally:
            if follow:
                with self._lock:
                    current.journals.remove(journal)
                    if not current.journals:
                        current.__class__ = _Index
            _dispose((), current if swapped else index)

    # -- claims (leases) ------------------------------------------------------

    def claim_keys(self, keys: list[bytes], ttl_ms: int, owner: bytes) -> list[ClaimRecord | None]:
        """O(log n) per key."""
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            leases = self._leases
            # An expired key is absent, its lease gone with it.
            now = leases.advance(self._settle_keys(keys) if self._ttl is not None else self.clock())
            records = leases.records
            shards = self._shards
            expires = now + ttl_ms
            granted: list[ClaimRecord | None] = []
            try:
                for key in keys:
                    value = shards[hash(key) % _SHARDS].get(key)
                    lease = records.get(key)
                    if value is None or (lease is not None and lease[1] > now):
                        granted.append(None)
                        continue
                    self._token += 1
                    leases.grant(key, (self._token, expires, owner))
                    granted.append(ClaimRecord(key, value, self._token, expires))
            finally:
                leases.settle()
            return granted

    def release_claims(self, refs: list[tuple[bytes, int]]) -> list[bool]:
        """O(log n) per ref; a ref whose lease is not live changes nothing."""
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            leases = self._leases
            # A lease on an expired key is gone with it.
            now = leases.advance(self._settle_keys([key for key, _ in refs]) if self._ttl is not None else self.clock())
            records = leases.records
            flags = []
            for key, token in refs:
                lease = records.get(key)
                if lease is not None and lease[0] == token and lease[1] > now:
                    leases.end(key, lease)
                    flags.append(True)
                else:
                    flags.append(False)
            return flags

    def complete_claims(self, refs: list[tuple[bytes, int]], delete: bool) -> list[bool]:
        """O(log n) per ref; a ref whose lease is not live changes nothing."""
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            leases = self._leases
            # A lease on an expired key is gone with it.
            now = leases.advance(self._settle_keys([key for key, _ in refs]) if self._ttl is not None else self.clock())
            records = leases.records
            shards = self._shards
            index = self._index
            flags = []
            for key, token in refs:
                lease = records.get(key)
                if lease is not None and lease[0] == token and lease[1] > now:
                    leases.end(key, lease)
                    if delete:
                        shard = hash(key) % _SHARDS
                        self._bytes -= len(key) + len(shards[shard].pop(key))
                        index.remove(key)
                        if self._ttl is not None:
                            self._unexpire(key, shard)
                    flags.append(True)
                else:
                    flags.append(False)
            return flags

    def renew_claims(self, refs: list[tuple[bytes, int]], ttl_ms: int) -> list[int | None]:
        """O(log n) per ref; a ref whose lease is not live changes nothing."""
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            leases = self._leases
            # A lease on an expired key is gone with it.
            now = leases.advance(self._settle_keys([key for key, _ in refs]) if self._ttl is not None else self.clock())
            records = leases.records
            expires = now + ttl_ms
            ends: list[int | None] = []
            for key, token in refs:
                lease = records.get(key)
                if lease is not None and lease[0] == token and lease[1] > now:
                    leases.renew(key, lease, expires)
                    ends.append(expires)
                else:
                    ends.append(None)
            return ends

    def read_lease(self, key: bytes) -> tuple[int, int, bytes] | None:
        """One dict lookup, under the lock (the leases' clock never goes back)."""
        with self._lock:
            leases = self._leases
            lease = leases.records.get(key)
            if lease is None or lease[1] <= leases.advance(self.clock()):
                return None
            if self._ttl is not None and self._is_expired(key, hash(key) % _SHARDS):
                return None  # gone with its key
            return lease

    def allocation_stats(self, prefix: bytes) -> tuple[int, int, int, int]:
        """Six bisections: O(log n) (once the expired entries are removed: see the module docstring)."""
        if self._ttl is not None:
            self._shed()
        with self._lock:
            leases = self._leases
            leases.advance(self._settle())
            lo, hi = _bounds(self._index.order, prefix)
            first, last = _bounds(leases.held, prefix)
            start, stop = _bounds(leases.expired, prefix)
            total, claimed = hi - lo, last - first
            return total, total - claimed, claimed, stop - start

    # -- snapshots ---------------------------------------------------------

    def begin_backup(self, allow_concurrent_writes: bool) -> BackupReader:
        with self._lock:
            if self._writers_refused is RestoreInProgressError:
                raise RestoreInProgressError("a restore is in progress; retry when it completes")
            if self._backup_running:
                raise BackupInProgressError("another backup is in progress")
            self._backup_running = True
            if not allow_concurrent_writes:
                self._writers_refused = BackupInProgressError
        return _MemoryBackupReader(self, point_in_time=not allow_concurrent_writes)

    def _end_backup(self) -> None:
        with self._lock:
            self._backup_running = False
            if self._writers_refused is BackupInProgressError:
                self._writers_refused = None

    def replace_all(self, batches: Iterator[Batch]) -> int:
        with self._lock:
            if self._backup_running:
                raise BackupInProgressError("a backup is in progress; retry when it completes")
            if self._writers_refused is not None:
                raise self._writers_refused()
            self._writers_refused = RestoreInProgressError
        # Built aside while readers keep the old data; swapped in at once.
        shards = _new_shards()
        index = _Index(self._track_keys)
        ttl = Expiries(_SHARDS, self._wall_clock)
        old: tuple[list[dict[bytes, bytes]], _Index, _Leases, Expiries | None] | None = None
        try:
            size = 0
            for rows, expiries in batches:
                if expiries is None:
                    step = _RESTORE_SLICE
                else:
                    # An entry expired when its batch arrives is skipped; the others keep their expiry.
                    now = self.clock()
                    kept = [(row, at) for row, at in zip(rows, expiries, strict=True) if not at or at > now]
                    rows = [row for row, _ in kept]
                    expiries = [at for _, at in kept]
                    step = _RESTORE_SLICE // 2  # each expiry costs about as much again as its key's indexing
                # Indexing costs ~2 us a key: slices keep each step short.
                for start in range(0, len(rows), step):
                    part = rows[start : start + step]
                    added, grown = _put_rows(shards, part)
                    size += grown
                    index.extend(added)
                    if expiries is not None:
                        for (key, _), at in zip(part, expiries[start : start + step]):
                            if at:
                                ttl.put(key, hash(key) % _SHARDS, at)
                            elif ttl.deadlines:
                                ttl.drop(key, hash(key) % _SHARDS)
                    elif ttl.deadlines:  # a key given again without an expiry (never in a backup)
                        for key, _ in part:
                            ttl.drop(key, hash(key) % _SHARDS)
                    pause()
            if self._quota:
                # Built aside: refusing here leaves the live data as it was (the finally frees what was built).
                if self.max_keys is not None and len(index.order) > self.max_keys:
                    raise QuotaExceededError(f"the snapshot holds more entries than the store's max_keys={self.max_keys}; nothing was restored")
                if self.max_bytes is not None and size > self.max_bytes:
                    raise QuotaExceededError(f"the snapshot holds more key+value bytes than the store's max_bytes={self.max_bytes}; nothing was restored")
            with self._lock:
                leases = _Leases(self._leases.seen)
                old = self._shards, self._index, self._leases, self._ttl
                self._shards, self._index, self._leases = shards, index, leases
                self._ttl = ttl if ttl.deadlines else None
                self._bytes = size
        finally:
            with self._lock:
                self._writers_refused = None
            if old is not None:
                _dispose(*old)  # what was swapped out
            else:
                _dispose(shards, index, None, ttl)  # after a failure, what was built so far
        return len(index.order)

    def read_marker(self, name: bytes) -> bytes | None:
        return self._markers.get(name)

    def write_marker(self, name: bytes, value: bytes) -> None:
        with self._lock:
            self._markers[name] = value

    def close(self) -> None:
        with self._lock:
            old = self._shards, self._index, self._leases, self._ttl
            self._shards = _new_shards()
            self._index = _Index(self._track_keys)
            self._bytes = 0
            self._leases = _Leases(self._leases.seen)
            self._ttl = None
        _dispose(*old)


class _MemoryBackupReader(BackupReader):
    def __init__(self, backend: MemoryBackend, point_in_time: bool) -> None:
        self._backend = backend
        self.point_in_time = point_in_time
        self._closed = False

    def batches(self, batch_size: int) -> Iterator[Batch]:
        backend = self._backend
        after: bytes | None = None
        done = False
        while not done:
            # A lock per slice of at most _BACKUP_SLICE keys, with a pause
            # before each: concurrent writers (when allowed) interleave between
            # slices, never inside one; a strict backup refuses them throughout.
            # An entry expired when its slice is read is left out.
            batch: list[tuple[bytes, bytes]] = []
            expiries: list[int] = []  # parallel to batch, 0: none
            while len(batch) < batch_size:
                pause()
                with backend._lock:
                    keys = list(islice(backend._index.order.irange(minimum=after, inclusive=(False, True)), min(_BACKUP_SLICE, batch_size - len(batch))))
                    shards = backend._shards
                    ttl = backend._ttl
                    if ttl is None:
                        batch += [(k, shards[hash(k) % _SHARDS][k]) for k in keys]
                        expiries += [0] * len(keys)
                    else:
                        now = backend.clock()
                        for key in keys:
                            shard = hash(key) % _SHARDS
                            at = ttl.at[shard].get(key, 0)
                            if not at or at > now:
                                batch.append((key, shards[shard][key]))
                                expiries.append(at)
                if not keys:
                    done = True
                    break
                after = keys[-1]
            if batch:
                yield batch, (expiries if any(expiries) else None)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._backend._end_backup()


def _bounds(order: SortedList[bytes], prefix: bytes) -> tuple[int, int]:
    """The ranks ``[lo, hi)`` of the keys starting with ``prefix``: two bisections."""
    lo = order.bisect_left(prefix) if prefix else 0
    end = prefix_end(prefix)
    return lo, len(order) if end is None else order.bisect_left(end)


def _span(order: SortedList[bytes], prefix: bytes) -> int:
    """How many keys start with ``prefix``."""
    lo, hi = _bounds(order, prefix)
    return hi - lo


def _put_rows(shards: list[dict[bytes, bytes]], rows: list[tuple[bytes, bytes]]) -> tuple[list[bytes], int]:
    """Store ``rows`` in ``shards``; the keys that were new (each once) and the change in key plus value bytes."""
    added = []
    grown = 0
    for key, value in rows:
        data = shards[hash(key) % _SHARDS]
        previous = data.get(key)
        if previous is None:
            added.append(key)
            grown += len(key) + len(value)
        else:
            grown += len(value) - len(previous)
        data[key] = value
    return added, grown


def _growth(shards: list[dict[bytes, bytes]], rows: list[tuple[bytes, bytes]]) -> tuple[int, int]:
    """The keys ``rows`` would add and the key+value bytes they would add (a key given twice: its last value), writing nothing."""
    final = dict(rows)
    new_keys = 0
    grown = 0
    for key, value in final.items():
        previous = shards[hash(key) % _SHARDS].get(key)
        if previous is None:
            new_keys += 1
            grown += len(key) + len(value)
        else:
            grown += len(value) - len(previous)
    return new_keys, grown


def _new_shards() -> list[dict[bytes, bytes]]:
    return [{} for _ in range(_SHARDS)]


def _replay(index: _Index, changed: list[tuple[bool, bytes]], after: bytes | None) -> None:
    """Apply to ``index`` the journaled changes (True: added) to keys at or below ``after``, in order."""
    if after is None:
        return
    for added, key in changed:
        if key <= after:
            if added:
                index.add(key)
            else:
                index.remove(key)


def _append_sorted(order: SortedList[bytes], keys: list[bytes]) -> None:
    """Append ``keys``, ascending and each above every key of ``order``, in O(len(keys)).

    What ``SortedList.update`` does for an empty list (sublists of the load
    factor), through its internals: on a non-empty one it adds a batch a key
    at a time, or re-sorts everything when the batch is large.
    """
    if not keys:
        return
    lists, maxes, load = order._lists, order._maxes, order._load
    start = 0
    if lists and len(lists[-1]) < load:  # fill the last sublist up first
        start = load - len(lists[-1])
        lists[-1].extend(keys[:start])
        maxes[-1] = lists[-1][-1]
    for pos in range(start, len(keys), load):
        sublist = keys[pos : pos + load]
        lists.append(sublist)
        maxes.append(sublist[-1])
    order._len += len(keys)
    del order._index[:]  # the positional index, rebuilt when next needed


def _dispose(
    shards: Iterable[dict[bytes, bytes]],
    index: _Index | None = None,
    leases: _Leases | None = None,
    ttl: Expiries | None = None,
) -> None:
    """Free structures that were swapped out (no one else reaches them any more) a slice at a time, with pauses between.

    The index first: it only holds references to the keys that the shards
    also hold, so each of its slices frees little; then the leases, then the
    values. The structures are emptied in place (their last references, the
    caller's, then free empty containers).
    """
    free = _Freer()
    if index is not None:
        free.sorted_list(index.order)
        free.list(index.slots)
        for slots in index.slot_of:
            free.dict(slots)
    if leases is not None:
        free.dict(leases.records)
        free.sorted_list(leases.held)
        free.sorted_list(leases.expired)
        free.sorted_list(leases.deadlines)
    if ttl is not None:
        for table in ttl.at:
            free.dict(table)
        free.sorted_list(ttl.deadlines)
    for data in shards:
        free.dict(data)


class _Freer:
    """Empties big containers in place, pausing after every :data:`_FREE_SLICE` entries freed."""

    __slots__ = ("budget",)

    def __init__(self) -> None:
        self.budget = _FREE_SLICE

    def spent(self, entries: int) -> None:
        self.budget -= entries
        if self.budget <= 0:
            pause()
            self.budget = _FREE_SLICE

    def dict(self, data: dict[Any, Any]) -> None:
        if not data:
            return
        while data:
            step = min(self.budget, len(data))
            for _ in range(step):
                data.popitem()
            self.spent(step)
        # popitem never shrinks the table: free it now, not with 63 others at the end.
        data.clear()
        self.spent(_FREE_SLICE // 16)

    def list(self, items: list[Any]) -> None:
        while items:
            step = min(self.budget, len(items))
            del items[-step:]
            self.spent(step)

    def sorted_list(self, order: SortedList[Any]) -> None:
        """A sublist (the load factor, ~1,000 entries) at a time, through SortedList's internals; then cleared."""
        lists, maxes = order._lists, order._maxes
        while lists:
            freed = len(lists.pop())
            maxes.pop()
            self.spent(freed)
        order.clear()


@dataclass(frozen=True)
class MemorySpec:
    """Options of the memory backend. Memory stores are told apart by ``name``."""

    track_keys: bool = True
    name: str = "default"
    max_keys: int | None = None
    max_bytes: int | None = None
    kind: str = "memory"
    scope: Scope = SCOPE

    @property
    def identity(self) -> tuple[str, str]:
        return ("memory", self.name)

    def describe(self) -> dict[str, object]:
        return {
            "backend": "memory", "name": self.name, "track_keys": self.track_keys,
            "max_keys": self.max_keys, "max_bytes": self.max_bytes,
        }  # fmt: skip

    def create(self) -> MemoryBackend:
        return MemoryBackend(track_keys=self.track_keys, name=self.name, max_keys=self.max_keys, max_bytes=self.max_bytes)


def configure(
    *,
    track_keys: object = True,
    name: object = "default",
    max_keys: object = None,
    max_bytes: object = None,
    **options: object,
) -> MemorySpec:
    """The memory backend's spec.

    Options:
        track_keys: keep the dense key list that makes ``random_key()``
            without a prefix O(1); without it, sampling is O(log n).
        name: tells memory stores of one process apart (default ``"default"``).
        max_keys, max_bytes: the quota (None or 0: none): a write that would
            store more keys, or more key+value bytes, raises QuotaExceededError.

    Raises InvalidOptionsError for unknown options (``path`` included: a
    memory store has no file) and values of the wrong type.
    """
    reject_unknown("memory", options)
    if not isinstance(track_keys, bool):
        raise InvalidOptionsError(f"track_keys must be a bool, not {type(track_keys).__name__}")
    if not isinstance(name, str) or not name:
        raise InvalidOptionsError("name must be a non-empty str")
    return MemorySpec(
        track_keys=track_keys,
        name=name,
        max_keys=check_quota("max_keys", max_keys),
        max_bytes=check_quota("max_bytes", max_bytes),
    )
