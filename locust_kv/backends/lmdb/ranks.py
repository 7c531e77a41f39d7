"""The rank index: counts of the indexed keys between fences, so that a range is counted in O(log n).

LMDB's B-tree keeps no subtree counts, so without this index
``count(start, end)`` and a page at an offset walk every key they pass. The
rank index keeps counts beside the key index (:mod:`~.index`), over exactly
the keys in ``slotof``, in one more database per generation,
``locust_kv.ranks.<g>``. It is a deterministic skip list stored as records:

* Every key has a *level* fixed by a hash of its bytes (CRC-32, then
  Adler-32 for the rare keys that need more bits): 0 for 4,095 keys of 4,096,
  and ``L`` when the low ``12 x L`` bits are zero (:func:`level_of`). So the
  structure depends only on the set of keys, never on the order of the writes
  or on which process made them.
* A key of level ``L >= 1`` is a *fence* on levels ``1..L``: a record
  ``bytes([level]) + key`` whose value (8 bytes, big-endian) counts the
  indexed keys from it up to the next fence of the same level. Every
  indexed key of level ``L`` is a fence; a deleted one may stay one (below). Each level in
  use also has a *head*, the record ``bytes([level])`` (keys are never
  empty), that counts the keys before the level's first fence.
* Level ``l`` has about ``n / 4096**l`` fences: up to about 16 million keys
  one level is in use (244 fences at a million keys), and a level is created
  by the first key that needs it.

A rank (how many keys are below a bound) goes down from the top level,
adding the counts of the fences it passes and descending at the last one
below the bound; at the bottom it counts the keys from that fence to the
bound (about 4,096, read in chunks of 512). That is O(4,096 x levels) =
O(log n): 0.6 to 0.85 ms for a count of 10,000 to 1,000,000 keys of a
1.1-million-key store (two ranks), where the walk of a million keys takes
60 to 150 ms. Ranges and offsets of at most 1,024 keys are read directly
(``ranges.WALK_FIRST``): cheaper than a rank there. Select (the key at a rank, for
offsets) is the same descent.

Maintenance, in the writer's transaction, right after the key enters or
leaves ``slotof``:

* A key of level 0 adds or removes 1 at the fence before it on each level in
  use: a seek and a put per level (one up to 16 million keys), about 1.5 µs.
* A fence key also splits the span of the fence before it: a count of the
  keys up to the next fence, about 4,096 of them (0.3 ms), for 1 key in
  4,096. Deleting it keeps its records, as a fence of no key whose span
  still counts the keys after it, so that inserting it again is as cheap
  as any other key (a flag or lock key toggled on and off would otherwise
  split at every insert). A fence left counting no key at all is removed by
  the delete that empties its span, so these do not pile up.

Every function takes the generation's ``slotof`` and ``ranks`` databases
(a restore fills the generation that is not live). A fence found missing, or
a count out of bounds, can only come from a damaged index: the maintenance
functions return False, and the caller marks the index ``n`` (none), as for
the slots. Readers check ``view.indexed`` before trusting a rank, and fall
back to the walk on ``LookupError``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from itertools import islice
from typing import TYPE_CHECKING, Final
from zlib import adler32, crc32

if TYPE_CHECKING:
    import lmdb
    from lmdb import _Database as Db

    from .layout import Txn

__all__ = [
    "FANOUT_BITS",
    "MAX_LEVEL",
    "append_ranks",
    "count_ranked",
    "level_of",
    "rank_add",
    "rank_remove",
    "rank_of",
    "select",
]

FANOUT_BITS: Final = 12
"""A key is a fence on one more level for each further 12 low zero bits of its hash (one key in 4,096 each)."""

MAX_LEVEL: Final = 64 // FANOUT_BITS
"""Five levels, from a 64-bit hash: room for 4,096**5 keys."""

_MASK: Final = (1 << FANOUT_BITS) - 1
_ZERO: Final = bytes(8)
_WALK: Final = 512
"""Keys read per chunk at the bottom of a walk."""


def level_of(key: bytes) -> int:
    """The number of levels ``key`` is a fence on (0 for 4,095 keys of 4,096; a pure function of the bytes)."""
    h = crc32(key)
    if h & _MASK:
        return 0
    h |= adler32(key) << 32  # more bits, needed by one key in 4,096 only
    level = 0
    while level < MAX_LEVEL and not h & _MASK:
        level += 1
        h >>= FANOUT_BITS
    return level


def _count(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def _top(cursor: lmdb.Cursor[bytes]) -> int:
    """The highest level in use (0: none), the cursor left anywhere."""
    return cursor.key()[0] if cursor.last() else 0


def _at_or_before(cursor: lmdb.Cursor[bytes], level: int, key: bytes) -> bool:
    """Put ``cursor`` on ``key``'s fence of ``level``, or the last record of ``level`` below it (the head at worst).

    False if there is none (a damaged index).
    """
    probe = bytes((level,)) + key
    if cursor.set_range(probe):
        if cursor.key() != probe and not cursor.prev():
            return False
    elif not cursor.last():
        return False
    return cursor.key()[0] == level


def _next_fence(cursor: lmdb.Cursor[bytes], level: int, key: bytes) -> bytes | None:
    """The first fence of ``level`` above ``key`` (its key), or None."""
    if cursor.set_range(bytes((level,)) + key + b"\x00"):
        fence = cursor.key()
        if fence[0] == level:
            return fence[1:]
    return None


def _keys_between(txn: Txn, slotof: Db, low: bytes, high: bytes | None) -> int:
    """The indexed keys in ``[low, high)``: a walk of ``slotof`` in chunks."""
    cursor = txn.cursor(slotof)
    if not cursor.set_range(low):
        return 0
    found = cursor.iternext(keys=True, values=False)
    total = 0
    while True:
        got = list(islice(found, _WALK))
        inside = len(got) if high is None else bisect_left(got, high)
        total += inside
        if inside < _WALK:
            return total


def _span(txn: Txn, slotof: Db, cursor: lmdb.Cursor[bytes], level: int, key: bytes) -> int:
    """The indexed keys from ``key`` up to the next fence of ``level`` (``key`` is a fence of every level below).

    On level 1, a walk of ``slotof``; above, the sum of the fence counts of
    the level below. -1 if ``key``'s fence below is missing.
    """
    bound = _next_fence(cursor, level, key)
    if level == 1:
        return _keys_between(txn, slotof, key, bound)
    below = level - 1
    if not cursor.set_key(bytes((below,)) + key):
        return -1
    total = 0
    for fence, raw in cursor.iternext():
        if fence[0] != below or (bound is not None and fence[1:] >= bound):
            break
        total += _count(raw)
    return total


def _bump(cursor: lmdb.Cursor[bytes], level: int, key: bytes, delta: int) -> bool:
    """Add ``delta`` to the fence of ``level`` whose span holds ``key`` (the cursor left on it); False if damaged."""
    if not _at_or_before(cursor, level, key):
        return False
    fence, raw = cursor.item()
    count = _count(raw) + delta
    if count < 0:
        return False
    cursor.put(fence, count.to_bytes(8, "big"))
    return True


def rank_add(txn: Txn, slotof: Db, ranks: Db, key: bytes) -> bool:
    """Count ``key``, just added to ``slotof``: one fence count per level, or a split where it is a new fence.

    False if the index turned out damaged (the caller stops trusting it).
    """
    cursor = txn.cursor(ranks)
    if not cursor.last():
        top = 0
    elif crc32(key) & _MASK:
        # Most keys (4,095 in 4,096) are fences on no level: one count per level (about 1.5 µs). This is
        # _bump inlined (a key of level 0 is never a fence, so the record before is the one): calling it
        # cost 0.45 µs more an insert (6.1 against 5.7 µs for a new key's set, interleaved runs).
        top = cursor.key()[0]
        for level in range(1, top + 1):
            if not (cursor.prev() if cursor.set_range(bytes((level,)) + key) else cursor.last()):
                return False
            fence, raw = cursor.item()
            if fence[0] != level:
                return False
            cursor.put(fence, (_count(raw) + 1).to_bytes(8, "big"))
        return True
    else:
        top = cursor.key()[0]
    fences = level_of(key)
    if fences > top:
        # New levels: a head that counts every key but this one, which the split below divides.
        before = (txn.stat(slotof)["entries"] - 1).to_bytes(8, "big")
        for level in range(top + 1, fences + 1):
            txn.put(bytes((level,)), before, True, True, False, ranks)
        top = fences
    emptied = []
    for level in range(1, top + 1):
        if not _at_or_before(cursor, level, key):
            return False
        previous, raw = cursor.item()
        had = _count(raw)
        if level > fences or previous[1:] == key:
            # ``key``'s span is the fence before it, or its own fence, kept since it was deleted.
            cursor.put(previous, (had + 1).to_bytes(8, "big"))
            continue
        # A split: the fence before keeps its keys below ``key``; ``key`` takes the rest, itself included.
        mine = _span(txn, slotof, cursor, level, key)
        if mine < 1 or mine > had + 1:
            return False
        txn.put(previous, (had + 1 - mine).to_bytes(8, "big"), True, True, False, ranks)
        txn.put(bytes((level,)) + key, mine.to_bytes(8, "big"), True, True, False, ranks)
        if had + 1 == mine and len(previous) > 1:
            emptied.append(previous[1:])  # a kept fence of no key, now counting nothing here
    for fence in emptied:
        _drop_if_empty(txn, ranks, fence)
    return True


def rank_remove(txn: Txn, ranks: Db, key: bytes) -> bool:
    """Uncount ``key``, just removed from ``slotof``: one fence count per level.

    A fence key's records stay, as fences of no key (their spans still count
    the keys after them), so that inserting it again costs no split: a key
    toggled on and off keeps the cost of any other. A fence left counting no
    key on any of its levels is removed (the fence before takes its empty
    span), so that such fences do not pile up. False if the index turned out
    damaged (the caller stops trusting it).
    """
    cursor = txn.cursor(ranks)
    emptied = []
    for level in range(1, _top(cursor) + 1):
        if not _bump(cursor, level, key, -1):
            return False
        if cursor.value() == _ZERO and len(cursor.key()) > 1:
            # A fence whose span on this level is now empty; the delete that empties its top level's drops it.
            emptied.append(cursor.key()[1:])
    for fence in emptied:
        _drop_if_empty(txn, ranks, fence)
    return True


def _drop_if_empty(txn: Txn, ranks: Db, fence: bytes) -> None:
    """Remove ``fence``'s records if its span on its top level is empty (so on every level: spans nest).

    Its top level's count falls only by deletes in that span, each of which
    visits it there: so a fence is dropped by the delete that empties it.
    """
    levels = level_of(fence)
    if txn.get(bytes((levels,)) + fence, None, ranks) != _ZERO:
        return
    for level in range(1, levels + 1):
        txn.delete(bytes((level,)) + fence, b"", ranks)


def append_ranks(txn: Txn, ranks: Db, keys: list[bytes], before: int) -> bool:
    """Count ``keys``, ascending and all above the ``before`` keys indexed so far: a restore's batch.

    No searches: each level's last fence takes the keys up to the next fence
    of its level, and the new fences are written once.
    """
    cursor = txn.cursor(ranks)
    top = _top(cursor)
    last: dict[int, bytes] = {}
    counts: dict[int, int] = {}
    for level in range(1, top + 1):
        # The level's last record: the one before the next level's head, or the very last.
        found = cursor.prev() if cursor.set_range(bytes((level + 1,))) else cursor.last()
        if not found or cursor.key()[0] != level:
            return False
        last[level], counts[level] = cursor.key(), _count(cursor.value())
    seen = before
    for key in keys:
        fences = level_of(key)
        for level in range(top + 1, fences + 1):
            last[level], counts[level] = bytes((level,)), seen
        top = max(top, fences)
        for level in range(1, top + 1):
            if level <= fences:
                txn.put(last[level], counts[level].to_bytes(8, "big"), True, True, False, ranks)
                last[level], counts[level] = bytes((level,)) + key, 1
            else:
                counts[level] += 1
        seen += 1
    for level, fence in last.items():
        txn.put(fence, counts[level].to_bytes(8, "big"), True, True, False, ranks)
    return True


def _descend(cursor: lmdb.Cursor[bytes], passes: Callable[[bytes, int, int], bool]) -> tuple[bytes, int, int | None]:
    """Down the levels from the top one's head: on each, past the fences while ``passes(fence, span, passed)``.

    ``span`` is the count of the fence the walk would leave (the keys from it
    to ``fence``), ``passed`` the keys before it. The fence where it stops is
    where it goes down. Returns that fence on level 1 (``b""``: the head),
    the keys before it, and its span (None when no level is in use). A
    missing fence (a damaged index) raises ``LookupError``.
    """
    at, passed, span = b"", 0, None
    for level in range(_top(cursor), 0, -1):
        if not cursor.set_key(bytes((level,)) + at):
            raise LookupError("rank index: missing fence")
        records = cursor.iternext()
        span = _count(next(records)[1])
        for fence, raw in records:
            if fence[0] != level or not passes(fence[1:], span, passed):
                break
            passed += span
            span = _count(raw)
            at = fence[1:]
    return at, passed, span


def rank_of(txn: Txn, slotof: Db, ranks: Db, bound: bytes) -> int:
    """How many indexed keys are below ``bound``: O(log n) (the module's walk).

    A missing fence (a damaged index) raises ``LookupError``.
    """
    if not bound:
        return 0
    at, passed, _ = _descend(txn.cursor(ranks), lambda fence, span, passed: fence < bound)
    return passed + _keys_between(txn, slotof, at, bound)


def select(txn: Txn, slotof: Db, ranks: Db, rank: int) -> bytes | None:
    """The indexed key with ``rank`` keys below it, or None when there are ``rank`` keys or fewer: O(log n).

    A missing fence (a damaged index) raises ``LookupError``.
    """
    if rank < 0:
        return None
    at, passed, span = _descend(txn.cursor(ranks), lambda fence, span, passed: rank - passed >= span)
    left = rank - passed
    if span is not None and left >= span:
        return None  # past the last fence's span: there are ``rank`` keys or fewer
    keys = txn.cursor(slotof)
    if not keys.set_range(at):
        return None
    return next(islice(keys.iternext(keys=True, values=False), left, None), None)


def count_ranked(txn: Txn, slotof: Db, ranks: Db, low: bytes, high: bytes | None) -> int:
    """The indexed keys in ``[low, high)``, a difference of two ranks: O(log n)."""
    if high is not None and high <= low:
        return 0
    above = txn.stat(slotof)["entries"] if high is None else rank_of(txn, slotof, ranks, high)
    return above - rank_of(txn, slotof, ranks, low)
