"""Reading key ranges: the keys with a prefix or in ``[low, high)``, counted or listed, in doubling steps.

Functions of a transaction and a database; none writes. A count is a
generator that yields between steps, for the engine's ``_read_in_steps``
(:func:`all_steps` runs one straight through).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Generator
from itertools import islice
from typing import TYPE_CHECKING, Final, TypeVar

from ..base import prefix_end
from .expiry import Dead, dead_test
from .ranks import rank_of, select

if TYPE_CHECKING:
    import lmdb
    from lmdb import _Database as Db

    from .layout import Txn, View

T = TypeVar("T")

__all__ = [
    "SMALL_RANGE",
    "RangeReader",
    "all_steps",
    "count_between_in",
    "count_between_steps",
    "count_range_steps",
    "count_small",
    "matching",
    "nth_key_steps",
    "range_end_test",
    "range_keys",
    "range_keys_from",
    "scan_after_steps",
    "scan_keys",
]

SMALL_RANGE: Final = 64
"""A prefix range this small is read whole, never sampled by slots."""

STEP_MAX: Final = 1 << 16
"""The largest step of a doubling read."""

COUNT_STEP: Final = 1 << 14
"""Keys a count reads between two pauses (about 4 ms)."""

WALK_FIRST: Final = 1024
"""Keys a count, or the skip of an offset, reads itself before it asks the rank index: reading them costs
less than a rank, which reads about 4,096 keys at its bottom (see :mod:`~.ranks`)."""


def range_end_test(prefix: bytes) -> Callable[[bytes], bool]:
    """A test of whether a key (>= ``prefix``, ascending) is past the keys with ``prefix``."""
    end = prefix_end(prefix)
    if end is not None:
        return lambda key: key >= end
    if not prefix:
        return lambda key: False
    return lambda key: not key.startswith(prefix)


def matching(keys: list[bytes], prefix: bytes) -> int:
    """How many of the ascending ``keys`` (all >= ``prefix``) start with ``prefix``."""
    if not prefix:
        return len(keys)
    end = prefix_end(prefix)
    if end is None:
        return next((i for i, key in enumerate(keys) if not key.startswith(prefix)), len(keys))
    return bisect_left(keys, end)


class RangeReader:
    """The keys of ``db`` with ``prefix``, read a part at a time in one transaction (``keys``, ascending)."""

    def __init__(self, txn: Txn, db: Db, prefix: bytes, dead: Dead | None = None) -> None:
        cursor = txn.cursor(db)
        self._found = cursor.iternext(keys=True, values=False) if cursor.set_range(prefix) else iter(())
        self._prefix = prefix
        self._dead = dead
        """Keys left out (expired ones); they count as read."""
        self.keys: list[bytes] = []
        self.done = False
        """Whether ``keys`` holds the whole range."""

    def read(self, wanted: int) -> None:
        """Read up to ``wanted`` more keys of the range."""
        if self.done:
            return
        got = list(islice(self._found, wanted))
        count = matching(got, self._prefix)
        part = got if count == len(got) else got[:count]
        dead = self._dead
        self.keys += part if dead is None else [key for key in part if not dead(key)]
        if count < len(got) or len(got) < wanted:
            self.done = True

    def read_all(self) -> list[bytes]:
        """The whole range."""
        while not self.done:
            self.read(STEP_MAX)
        return self.keys


def range_keys(txn: Txn, db: Db, prefix: bytes, limit: int = -1) -> list[bytes]:
    """The keys of ``db`` that start with ``prefix``, ascending (at most ``limit`` when > 0).

    Reads in doubling steps, so a short range costs about its own size.
    """
    cursor = txn.cursor(db)
    if not cursor.set_range(prefix):
        return []
    return range_keys_from(cursor, prefix, limit)


def range_keys_from(cursor: lmdb.Cursor[bytes], prefix: bytes, limit: int) -> list[bytes]:
    """From the cursor's position (in or past the range), the keys with ``prefix``; at most ``limit`` when > 0."""
    found = cursor.iternext(keys=True, values=False)
    keys: list[bytes] = []
    step = SMALL_RANGE + 1
    while True:
        wanted = step if limit <= 0 else min(step, limit - len(keys))
        got = list(islice(found, wanted))
        count = matching(got, prefix)
        keys += got if count == len(got) else got[:count]
        if count < len(got) or len(got) < wanted or len(keys) == limit:
            return keys
        step = min(step * 2, STEP_MAX)


def count_between_in(txn: Txn, view: View, low: bytes, high: bytes | None) -> Generator[None, None, int]:
    """The keys of the data in ``[low, high)``, in steps (see :func:`count_between_steps`)."""
    return count_between_steps(txn, view.data, low, high)


def count_small(txn: Txn, db: Db, low: bytes, high: bytes | None) -> int | None:
    """How many keys of ``db`` are in ``[low, high)`` if at most :data:`WALK_FIRST`, else None.

    Reads at most ``WALK_FIRST + 1`` keys, in doubling steps from 65 (at most
    about twice the keys of a small range).
    """
    cursor = txn.cursor(db)
    if not cursor.set_range(low):
        return 0
    found = cursor.iternext(keys=True, values=False)
    wanted = WALK_FIRST + 1
    total = 0
    step = SMALL_RANGE + 1
    while total < wanted:
        ask = min(step, wanted - total)
        got = list(islice(found, ask))
        inside = len(got) if high is None else bisect_left(got, high)
        total += inside
        if inside < ask:  # past the range's end, or the database's
            break
        step *= 2
    return total if total <= WALK_FIRST else None


def count_range_steps(txn: Txn, db: Db, prefix: bytes) -> Generator[None, None, int]:
    """How many keys of ``db`` start with ``prefix``, in steps (see :func:`count_between_steps`).

    Keys are UTF-8, so a prefix with no :func:`prefix_end` is empty, and
    ``[prefix, prefix_end(prefix))`` is exactly the keys with the prefix.
    """
    return count_between_steps(txn, db, prefix, prefix_end(prefix))


def count_between_steps(txn: Txn, db: Db, low: bytes, high: bytes | None) -> Generator[None, None, int]:
    """How many keys of ``db`` are in ``[low, high)`` (``high`` None: no end), yielding after each :data:`COUNT_STEP` keys read.

    The entry count for the whole database (O(1)), else a cursor walk
    (O(k)): LMDB's B-tree keeps no counts. Run by the engine's
    ``_read_in_steps``, which lets other greenlets run at each yield, in
    the same transaction.
    """
    if not low and high is None:
        return int(txn.stat(db)["entries"])
    cursor = txn.cursor(db)
    if not cursor.set_range(low):
        return 0
    found = cursor.iternext(keys=True, values=False)
    total = 0
    step = SMALL_RANGE + 1
    while True:
        got = list(islice(found, step))
        count = len(got) if high is None else bisect_left(got, high)
        total += count
        if count < len(got) or len(got) < step:
            return total
        if step == COUNT_STEP:
            yield
        step = min(step * 2, COUNT_STEP)


def nth_key_steps(
    txn: Txn, db: Db, low: bytes, high: bytes | None, n: int, dead: Dead | None = None
) -> Generator[None, None, bytes | None]:
    """The key of ``db`` with ``n`` keys of ``[low, high)`` before it, or None when the range holds ``n`` keys or fewer.

    A cursor walk of ``n`` keys (LMDB's B-tree keeps no ranks), yielding
    after each :data:`COUNT_STEP` keys read, as :func:`count_between_steps`.
    Keys for which ``dead`` is true are not counted (nor returned).
    """
    cursor = txn.cursor(db)
    if not cursor.set_range(low):
        return None
    found = cursor.iternext(keys=True, values=False)
    passed = 0
    step = SMALL_RANGE + 1
    while True:
        got = list(islice(found, step))
        inside = len(got) if high is None else bisect_left(got, high)
        live = got if dead is None else [key for key in got[:inside] if not dead(key)]
        counted = inside if dead is None else len(live)
        if n - passed < counted:
            return live[n - passed]
        if inside < len(got) or len(got) < step:
            return None
        passed += counted
        if step == COUNT_STEP:
            yield
        step = min(step * 2, COUNT_STEP)


def _select_after(txn: Txn, view: View, low: bytes, high: bytes | None, offset: int) -> bytes | None:
    """The key ``offset`` keys into ``[low, high)`` from the rank index, O(log n); None past the range's end.

    ``LookupError`` if the rank index is damaged.
    """
    first = select(txn, view.slotof, view.ranks, rank_of(txn, view.slotof, view.ranks, low) + offset)
    if first is None or (high is not None and first >= high):
        return None
    return first


def scan_after_steps(
    txn: Txn, view: View, low: bytes, high: bytes | None, offset: int, limit: int, page: Callable[..., T],
    clock: Callable[[], int],
) -> Generator[None, None, T]:
    """``page(txn, view, first, high, limit, clock)`` where ``first`` is the live key ``offset`` live keys into ``[low, high)``.

    With the key index, no expired entry and an offset over
    :data:`WALK_FIRST`, the rank index finds ``first`` in O(log n); else
    the skip walks in steps (:func:`nth_key_steps`). The page is read in the
    same transaction, so it is of the same snapshot. When the range holds
    ``offset`` keys or fewer, the page is of the empty range ``[low, low)``.
    """
    dead = dead_test(txn, view, clock()) if view.expiring else None
    first: bytes | None
    if dead is None and view.indexed and offset > WALK_FIRST:
        try:
            first = _select_after(txn, view, low, high, offset)
        except LookupError:  # a damaged rank index: the walk still answers
            first = yield from nth_key_steps(txn, view.data, low, high, offset, dead)
    else:
        first = yield from nth_key_steps(txn, view.data, low, high, offset, dead)
    if first is None:
        return page(txn, view, low, low, limit, clock)
    return page(txn, view, first, high, limit, clock)


def all_steps(steps: Generator[None, None, T]) -> T:
    """The result of a function done in steps, its steps run back to back."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: T = done.value
            return result


def scan_keys(
    txn: Txn, view: View, low: bytes, high: bytes | None, limit: int, clock: Callable[[], int]
) -> tuple[list[bytes], bool]:
    """Up to ``limit`` live keys of ``[low, high)``, and whether more follow."""
    cursor = txn.cursor(view.data)
    if (high is not None and low >= high) or not cursor.set_range(low):
        return [], False
    dead = dead_test(txn, view, clock()) if view.expiring else None
    found = cursor.iternext(keys=True, values=False)
    wanted = limit + 1 if limit > 0 else -1
    keys: list[bytes] = []
    step = SMALL_RANGE + 1
    while True:
        ask = step if wanted <= 0 else min(step, wanted - len(keys))
        got = list(islice(found, ask))
        inside = len(got) if high is None else bisect_left(got, high)
        part = got if inside == len(got) else got[:inside]
        keys += part if dead is None else [key for key in part if not dead(key)]
        if len(keys) == wanted:
            keys.pop()
            return keys, True
        if inside < len(got) or len(got) < ask:
            return keys, False
        step = min(step * 2, STEP_MAX)
