"""The memory backend: one process's store, in dicts.

Atomicity: every operation runs under one OS-level lock, so it is atomic with
respect to every greenlet and every thread of the process. The critical
sections never yield to gevent, so holding an OS lock cannot deadlock two
greenlets of the same thread. The data is private to the process: after a
fork each process has its own copy.

Index: the keys are also kept in a :class:`sortedcontainers.SortedList` for
ordered scans and O(log n) prefix sampling, and, with ``track_keys``, in a
dense list that makes ``random_key()`` without a prefix O(1).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final
from itertools import islice

from gevent.monkey import get_original
from sortedcontainers import SortedList

from .._cooperative import CHUNK, pause
from ..errors import BackupInProgressError, InvalidOptionsError, KVError, RestoreInProgressError
from .base import Backend, BackupReader, Scope, apply_increment, prefix_end, reject_unknown

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

_PREFIX_DRAWS = 8
"""Draws from all keys that ``random_key(prefix)`` tries before it bisects."""


_MAX_PAGE: Final = (1 << 62)
"""A larger scan limit is clamped to this (islice takes at most sys.maxsize); no store holds as many keys."""


_SHARDS = 64
"""The values and the slot map are split in this many dicts: growing one dict
of a million keys stalls the process for 30-60 ms at each resize; growing 64
small ones never does."""


class _Index:
    """The key index: sorted keys, and with tracking a dense list for O(1) sampling.

    ``slot_of`` maps a key to its position in ``slots``, in shards chosen by
    the key's (cached) hash.
    """

    __slots__ = ("changes", "order", "slot_of", "slots", "tracked")

    def __init__(self, tracked: bool) -> None:
        self.tracked = tracked
        self.changes = 0  # keys added or removed one by one since creation
        self.order = SortedList()
        self.slots: list[bytes] = []
        self.slot_of: list[dict[bytes, int]] = [{} for _ in range(_SHARDS)] if tracked else []

    def extend(self, keys: list[bytes]) -> None:
        """Add keys known to be absent, in bulk."""
        self.order.update(keys)
        if self.tracked:
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


class MemoryBackend(Backend):
    """The store of one process, in memory. See the module docstring."""

    kind = "memory"
    scope = SCOPE

    def __init__(self, track_keys: bool = True, name: str = "default") -> None:
        self.location = f"memory store {name!r} of this process"
        self._lock = _allocate_lock()
        self._track_keys = track_keys
        # The values, in shards chosen by the key's (cached) hash, so that no
        # dict grows past a few tens of thousands of keys: one dict of a
        # million keys stalls the process for 30-60 ms each time it resizes.
        self._shards = _new_shards()
        self._index = _Index(track_keys)
        # When set, every mutating call raises this: a strict backup or a
        # restore is running. Checked under the lock.
        self._writers_refused: type[KVError] | None = None
        self._backup_running = False
        self._markers: dict[bytes, bytes] = {}

    # -- single-key operations --------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        return self._shards[hash(key) % _SHARDS].get(key)

    def exists(self, key: bytes) -> bool:
        return key in self._shards[hash(key) % _SHARDS]

    def set(self, key: bytes, value: bytes) -> None:
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            data = self._shards[hash(key) % _SHARDS]
            if key not in data:
                self._index.add(key)
            data[key] = value

    def delete(self, key: bytes) -> bool:
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            if self._shards[hash(key) % _SHARDS].pop(key, None) is None:
                return False
            self._index.remove(key)
            return True

    def increment_by(self, key: bytes, delta: int) -> int:
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            data = self._shards[hash(key) % _SHARDS]
            current = data.get(key)
            value, encoded = apply_increment(current, delta)
            if current is None:
                self._index.add(key)
            data[key] = encoded
            return value

    def get_or_set(self, key: bytes, value: bytes) -> tuple[bytes, bool]:
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            data = self._shards[hash(key) % _SHARDS]
            current = data.get(key)
            if current is not None:
                return current, True
            self._index.add(key)
            data[key] = value
            return value, False

    def swap(self, key: bytes, value: bytes) -> bytes | None:
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            data = self._shards[hash(key) % _SHARDS]
            previous = data.get(key)
            if previous is None:
                self._index.add(key)
            data[key] = value
            return previous

    def compare_and_swap(self, key: bytes, old: bytes | None, new: bytes) -> bool:
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            data = self._shards[hash(key) % _SHARDS]
            current = data.get(key)
            if current != old:
                return False
            if current is None:
                self._index.add(key)
            data[key] = new
            return True

    def compare_and_delete(self, key: bytes, old: bytes) -> bool:
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            data = self._shards[hash(key) % _SHARDS]
            if data.get(key) != old:
                return False
            del data[key]
            self._index.remove(key)
            return True

    # -- whole-store operations -------------------------------------------

    def clear(self) -> None:
        with self._lock:
            if self._writers_refused is not None:
                raise self._writers_refused()
            old = self._shards
            self._shards = _new_shards()
            self._index = _Index(self._track_keys)
        _dispose(old)

    def size(self) -> int:
        return len(self._index.order)

    def scan(self, prefix: bytes, start: bytes, limit: int) -> tuple[list[tuple[bytes, bytes]], bool]:
        with self._lock:
            keys = self._index.order.irange(max(prefix, start), prefix_end(prefix), (True, False))
            if limit > 0:
                page = list(islice(keys, min(limit, _MAX_PAGE) + 1))
                more = len(page) > limit
                if more:
                    page.pop()
            else:
                page, more = list(keys), False
            shards = self._shards
            return [(k, shards[hash(k) % _SHARDS][k]) for k in page], more

    def random_key(self, prefix: bytes) -> bytes | None:
        with self._lock:
            index = self._index
            if not prefix:
                n = len(index.order)
                if n == 0:
                    return None
                return index.slots[random.randrange(n)] if index.tracked else index.order[random.randrange(n)]
            if index.tracked and index.slots:
                # A few uniform draws from all keys, kept when they match, are
                # a uniform draw among the matching keys; for a wide prefix
                # this avoids two bisections. A narrow one falls through.
                slots = index.slots
                n = len(slots)
                for _ in range(_PREFIX_DRAWS):
                    key = slots[int(random.random() * n)]
                    if key.startswith(prefix):
                        return key
            order = index.order
            lo = order.bisect_left(prefix)
            end = prefix_end(prefix)
            hi = len(order) if end is None else order.bisect_left(end)
            return order[random.randrange(lo, hi)] if hi > lo else None

    def rebuild_key_list(self) -> None:
        # The index changes in the same critical section as the data, so it
        # cannot drift; rebuilding recomputes it from the keys a chunk at a
        # time, and swaps it in if no key came or went meanwhile (else again).
        for _ in range(_REBUILD_ATTEMPTS):
            with self._lock:
                current = self._index
                changes = current.changes
                keys = list(current.order)
            index = _Index(self._track_keys)
            for start in range(0, len(keys), CHUNK):
                index.extend(keys[start : start + CHUNK])
                pause()
            with self._lock:
                if self._index is current and current.changes == changes:
                    self._index = index
                    return
        with self._lock:  # writers kept changing the keys: rebuild while holding them off
            index = _Index(self._track_keys)
            index.extend(list(self._index.order))
            self._index = index

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

    def replace_all(self, batches: Iterator[list[tuple[bytes, bytes]]]) -> int:
        with self._lock:
            if self._backup_running:
                raise BackupInProgressError("a backup is in progress; retry when it completes")
            if self._writers_refused is not None:
                raise self._writers_refused()
            self._writers_refused = RestoreInProgressError
        try:
            # Built aside while readers keep the old data; swapped in at once.
            shards = _new_shards()
            index = _Index(self._track_keys)
            for batch in batches:
                # Indexing costs ~2 us a key: slices keep each step short.
                for start in range(0, len(batch), _RESTORE_SLICE):
                    added = []
                    for key, value in batch[start : start + _RESTORE_SLICE]:
                        data = shards[hash(key) % _SHARDS]
                        if key not in data:
                            added.append(key)
                        data[key] = value
                    index.extend(added)
                    pause()
            with self._lock:
                old, self._shards, self._index = self._shards, shards, index
        finally:
            with self._lock:
                self._writers_refused = None
        _dispose(old)
        return len(index.order)

    def read_marker(self, name: bytes) -> bytes | None:
        return self._markers.get(name)

    def write_marker(self, name: bytes, value: bytes) -> None:
        with self._lock:
            self._markers[name] = value

    def close(self) -> None:
        with self._lock:
            old = self._shards
            self._shards = _new_shards()
            self._index = _Index(self._track_keys)
        _dispose(old)


class _MemoryBackupReader(BackupReader):
    def __init__(self, backend: MemoryBackend, point_in_time: bool) -> None:
        self._backend = backend
        self.point_in_time = point_in_time
        self._closed = False

    def batches(self, batch_size: int) -> Iterator[list[tuple[bytes, bytes]]]:
        backend = self._backend
        after: bytes | None = None
        while True:
            # A lock per batch: concurrent writers (when allowed) interleave
            # between batches, never inside one.
            with backend._lock:
                keys = backend._index.order.irange(minimum=after, inclusive=(False, True))
                shards = backend._shards
                batch = [(k, shards[hash(k) % _SHARDS][k]) for k in islice(keys, batch_size)]
            if not batch:
                return
            yield batch
            after = batch[-1][0]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._backend._end_backup()


def _new_shards() -> list[dict[bytes, bytes]]:
    return [{} for _ in range(_SHARDS)]


def _dispose(shards: list[dict[bytes, bytes]]) -> None:
    """Free a store's values a chunk at a time, so deallocation does not stall greenlets."""
    for data in shards:
        while data:
            for _ in range(min(CHUNK, len(data))):
                data.popitem()
            pause()


@dataclass(frozen=True)
class MemorySpec:
    """Options of the memory backend. Memory stores are told apart by ``name``."""

    track_keys: bool = True
    name: str = "default"
    kind: str = "memory"
    scope: Scope = SCOPE

    @property
    def identity(self) -> tuple[str, str]:
        return ("memory", self.name)

    def describe(self) -> dict[str, object]:
        return {"backend": "memory", "name": self.name, "track_keys": self.track_keys}

    def create(self) -> MemoryBackend:
        return MemoryBackend(track_keys=self.track_keys, name=self.name)


def configure(*, track_keys: object = True, name: object = "default", **options: object) -> MemorySpec:
    """The memory backend's spec.

    Options:
        track_keys: keep the dense key list that makes ``random_key()``
            without a prefix O(1); without it, sampling is O(log n).
        name: tells memory stores of one process apart (default ``"default"``).

    Raises InvalidOptionsError for unknown options (``path`` included: a
    memory store has no file) and values of the wrong type.
    """
    reject_unknown("memory", options)
    if not isinstance(track_keys, bool):
        raise InvalidOptionsError(f"track_keys must be a bool, not {type(track_keys).__name__}")
    if not isinstance(name, str) or not name:
        raise InvalidOptionsError("name must be a non-empty str")
    return MemorySpec(track_keys=track_keys, name=name)
